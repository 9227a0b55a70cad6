"""Which consent versions were in force for a set of subjects at an instant: the set-based
queries the decision path calls.

``effective_consents`` gives each subject's facts (``ledger.consent.facts``): one query per
chunk of subjects (or one query over a subquery, or one scan of the table for tens of
thousands of subjects), never a query per subject. ``signatures`` is its bulk form for an
evaluation over a whole dataset: a small number per distinct set of consent terms and the
consent snapshot hash, without an object per consent (on PostgreSQL, without an object per
row either: ``ledger.packed``).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Select, and_, bindparam, case, or_, select
from sqlalchemy.orm import Session

from ledger.consent import time_limits
from ledger.consent.facts import ConsentFact, ScopeFact
from ledger.consent.models import ConsentVersion
from ledger.db import driver_rows
from ledger.dbtypes import table_of
from ledger.packed import Keys, SortedIds, copy_rows, distinct, order_by, prefix

CHUNK = 5_000
WHOLE_TABLE_AFTER = 4 * CHUNK


def _query(as_of: datetime | Any, subject_filter: Any) -> Any:
    """Every version recorded by ``as_of``, flagged whether it is active and valid then.

    The latest of a consent's versions recorded by ``as_of`` is its state as of then (the
    caller keeps only that one): no correlated "is there a newer version?" subquery, which
    costs more than the scan itself over hundreds of thousands of consents. What a version
    says comes back as its terms key (``ledger.consent.terms``); the JSON behind each
    distinct key is read once."""
    cv = table_of(ConsentVersion)
    valid = and_(
        cv.c.status == "active",
        cv.c.valid_from <= as_of,
        or_(cv.c.valid_until.is_(None), cv.c.valid_until > as_of),
    )
    query = select(
        cv.c.consent_id,
        cv.c.version,
        cv.c.subject_id,
        case((valid, 1), else_=0),
        cv.c.terms,
    ).where(cv.c.recorded_at <= as_of)
    if subject_filter is not None:
        query = query.where(subject_filter(cv.c.subject_id))
    return query


@lru_cache(maxsize=1)
def _by_ids() -> Any:
    moment = bindparam("as_of", type_=table_of(ConsentVersion).c.recorded_at.type)
    return _query(moment, lambda c: c.in_(bindparam("ids", expanding=True)))


Row = tuple[str, int, str, int, str]  # consent, version, subject, in force, terms key


def _rows(
    session: Session, as_of: datetime, subjects: Sequence[str] | Select[Any] | None
) -> list[Row]:
    """Per consent of the subjects, the version that was its state at ``as_of``, if that
    version was in force then."""
    batches: Iterable[list[Any]]
    if subjects is None or (not isinstance(subjects, Select) and len(subjects) > WHOLE_TABLE_AFTER):
        # Tens of thousands of subjects: one scan of the table beats many IN lists (the
        # caller ignores the others).
        batches = [driver_rows(session, _query(as_of, None))]
    elif isinstance(subjects, Select):
        batches = [driver_rows(session, _query(as_of, lambda c, q=subjects: c.in_(q)))]
    else:
        ids = list(dict.fromkeys(subjects))
        # One statement built once and reused: building it costs more than running it
        # when a call asks about a handful of subjects (authorize, release re-checks).
        batches = (
            driver_rows(session, _by_ids(), {"as_of": as_of, "ids": ids[i : i + CHUNK]})
            for i in range(0, len(ids), CHUNK)
        )
    rows: list[Row] = []
    for batch in batches:
        rows.extend(batch)
    amended = {row[0] for row in rows if row[1] != 1}
    if not amended:
        return time_limits.within(session, as_of, [row for row in rows if row[3]])
    latest: dict[str, int] = {}  # amended or withdrawn consents: the highest version wins
    for row in rows:
        if row[0] in amended and latest.get(row[0], 0) < row[1]:
            latest[row[0]] = row[1]
    return time_limits.within(
        session,
        as_of,
        [r for r in rows if r[3] and (r[0] not in amended or latest[r[0]] == r[1])],
    )


class _Terms:
    """What each distinct terms key says, read and parsed once per key."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.ids: dict[str, int] = {}
        self.parsed: list[tuple[str, tuple[str, ...], tuple[str, ...], ScopeFact]] = []

    def read(self, rows: Iterable[Row]) -> None:
        """Read the terms behind every key of ``rows`` not read yet, from one version
        that carries the key."""
        carrier: dict[str, tuple[str, int]] = {}
        for r in rows:
            if r[4] not in self.ids and r[4] not in carrier:
                carrier[r[4]] = (r[0], r[1])
        wanted = set(carrier.values())
        cv = table_of(ConsentVersion)
        carriers = sorted({cid for cid, _ in wanted})
        for i in range(0, len(carriers), CHUNK):
            for cid, version, key, decision, purposes, modifiers, scope in self.session.execute(
                select(
                    cv.c.consent_id,
                    cv.c.version,
                    cv.c.terms,
                    cv.c.decision,
                    cv.c.purposes,
                    cv.c.modifiers,
                    cv.c.scope,
                ).where(cv.c.consent_id.in_(carriers[i : i + CHUNK]))
            ):
                if (cid, version) in wanted and key not in self.ids:
                    self.ids[key] = len(self.parsed)
                    self.parsed.append(
                        (decision, tuple(purposes), tuple(modifiers), ScopeFact.of(scope or {}))
                    )

    def fact(self, row: Row) -> ConsentFact:
        number = self.ids[row[4]]
        decision, purposes, modifiers, scope = self.parsed[number]
        return ConsentFact(row[0], row[1], row[2], decision, purposes, modifiers, scope, number)


def effective_consents(
    session: Session,
    as_of: datetime,
    subjects: Sequence[str] | Select[Any] | None = None,
) -> dict[str, list[ConsentFact]]:
    """Consents in force at ``as_of`` (as known at ``as_of``), grouped by subject.

    ``subjects`` is a list of ids, a SELECT of ids (e.g. a dataset's subjects, so the work
    stays in the database), or None for everyone.
    """
    wanted = None if subjects is None or isinstance(subjects, Select) else set(subjects)
    rows = [r for r in _rows(session, as_of, subjects) if wanted is None or r[2] in wanted]
    terms = _Terms(session)
    terms.read(rows)
    out: dict[str, list[ConsentFact]] = defaultdict(list)
    for row in rows:
        out[row[2]].append(terms.fact(row))
    return out


@dataclass
class Signatures:
    """What many subjects' consents say, without an object per consent: subjects whose
    consents in force have the same terms share a signature (a small number)."""

    of_subject: npt.NDArray[np.intp]  # per subject asked about, in the order asked
    facts: list[list[ConsentFact]]  # per signature, the facts of one subject that has it
    # SHA-256 over "subject:consent:version;" of every version in force, by subject id
    # then consent id.
    snapshot: str


def signatures(
    session: Session,
    as_of: datetime,
    subjects: Sequence[str] | SortedIds,
) -> Signatures:
    """Consent signatures for a dataset's subjects as of ``as_of``: the set-based path of
    an evaluation over hundreds of thousands of subjects. Most subjects hold one consent,
    so rows are matched to subjects and grouped with array operations; only subjects
    holding several consents are looked at one by one. Given a dataset's ``SortedIds`` on
    PostgreSQL, the rows come as packed arrays, never as an object per row."""
    if not len(subjects):
        return Signatures(np.zeros(0, np.intp), [[]], hashlib.sha256(b"").hexdigest())
    if isinstance(subjects, SortedIds) and len(subjects) > WHOLE_TABLE_AFTER:
        packed = _packed_rows(session, as_of, subjects)
        if packed is not None:
            who, row_terms, row, digest = packed
            return _grouped(
                session, len(subjects), who, row_terms, row, digest, _split(who, len(subjects))
            )
    ids = subjects.ids if isinstance(subjects, SortedIds) else list(subjects)
    rows = _rows(session, as_of, ids)
    number_of = (
        subjects.number_of
        if isinstance(subjects, SortedIds)
        else {sid: n for n, sid in enumerate(ids)}
    )
    spot = np.array([number_of.get(r[2], -1) for r in rows], dtype=np.intp)
    mine = np.flatnonzero(spot >= 0)
    who = spot[mine]
    kept = [rows[i] for i in mine.tolist()]
    texts: dict[str, int] = {}
    row_terms = np.array([texts.setdefault(r[4], len(texts)) for r in kept], dtype=np.intp)
    # What each subject contributes to the snapshot: its versions in force, by consent id.
    entry = np.full(len(ids), "", dtype=object)
    single, several = held = _split(who, len(ids))
    entry[who[single]] = [f"{r[2]}:{r[0]}:{r[1]};" for r in map(kept.__getitem__, single.tolist())]
    for n, group in several.items():
        versions = sorted((kept[i] for i in group), key=lambda r: r[0])
        entry[n] = "".join(f"{r[2]}:{r[0]}:{r[1]};" for r in versions)
    if any(a > b for a, b in itertools.pairwise(ids)):  # a dataset's come sorted
        entry = entry[np.argsort(np.array(ids, dtype=object), kind="stable")]
    digest = hashlib.sha256("".join(entry.tolist()).encode()).hexdigest()
    return _grouped(session, len(ids), who, row_terms, kept.__getitem__, digest, held)


Held = tuple[npt.NDArray[np.intp], dict[int, list[int]]]


def _split(who: npt.NDArray[np.intp], count: int) -> Held:
    """Versions of subjects holding one (their indices) and several (by subject)."""
    held = np.bincount(who, minlength=count)
    several: dict[int, list[int]] = {}
    for i in np.flatnonzero(held[who] > 1).tolist():
        several.setdefault(int(who[i]), []).append(i)
    return np.flatnonzero(held[who] == 1), several


def _packed_rows(
    session: Session, as_of: datetime, subjects: SortedIds
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], Callable[[int], Row], str] | None:
    """The versions in force, as arrays matched to ``subjects``: (subject position, terms
    number, a row maker, the snapshot hash); None when the rows cannot be read packed."""
    records = copy_rows(session, _query(as_of, None), ("text", "int", "text", "int", "text"))
    if records is None:
        return None
    consent, version, subject = records["f0"], records["f1"], records["f2"]
    keep = records["f3"] == 1
    if (version != 1).any():  # amended or withdrawn consents: only the highest version
        # Their rows (and any sharing an id prefix with them), by consent then version.
        rows = np.flatnonzero(np.isin(prefix(consent), prefix(consent[version != 1])))
        order = rows[np.lexsort((version[rows], consent[rows]))]
        last = np.ones(len(order), dtype=np.bool_)
        last[:-1] = consent[order][1:] != consent[order][:-1]
        keep[order[~last]] = False
    where = subjects.positions(subject)
    rows = np.flatnonzero(keep & (where >= 0))
    first, row_terms = distinct(records["f4"][rows])

    def row(i: int) -> Row:
        r = records[rows[i]]
        return (r["f0"].decode(), int(r["f1"]), r["f2"].decode(), 1, r["f4"].decode())

    carriers = [row(i) for i in first.tolist()]
    limited = [n for n, r in enumerate(time_limits.limited(session, carriers)) if r]
    if limited:  # permits with a time limit: drop the versions whose limit has passed
        candidates = np.flatnonzero(np.isin(row_terms, limited))
        ended = time_limits.ended(session, as_of, [row(i) for i in candidates.tolist()])
        if ended:
            gone = np.array(
                [(row(i)[0], row(i)[1]) in ended for i in candidates.tolist()], dtype=np.bool_
            )
            keep[rows[candidates[gone]]] = False
            rows = np.flatnonzero(keep & (where >= 0))
            _, row_terms = distinct(records["f4"][rows])

    # "subject:consent:version;" per version in force, by subject then consent.
    order = rows[order_by(where[rows], consent[rows])]
    digest = hashlib.sha256(_joined(subject[order], consent[order], version[order])).hexdigest()
    return where[rows], row_terms, row, digest


def _joined(subject: Keys, consent: Keys, version: npt.NDArray[Any]) -> bytes:
    """``b"".join(b"%s:%s:%d;" % row)`` over fixed-width ids, built as one byte matrix
    (the ids hold no NUL byte, so NUL marks what to leave out)."""
    digits = len(str(int(version.max(initial=1))))
    number = version.astype(np.int64)
    width_s, width_c = subject.dtype.itemsize, consent.dtype.itemsize
    matrix = np.zeros((len(subject), width_s + width_c + digits + 3), dtype=np.uint8)
    matrix[:, :width_s] = subject.view(np.uint8).reshape(-1, width_s)
    matrix[:, width_s] = ord(":")
    at = width_s + 1
    matrix[:, at : at + width_c] = consent.view(np.uint8).reshape(-1, width_c)
    at += width_c
    matrix[:, at] = ord(":")
    at += 1
    for d in range(digits):
        place = 10 ** (digits - 1 - d)
        shown = (number >= place) | (place == 1)
        matrix[:, at + d] = np.where(shown, ord("0") + (number // place) % 10, 0)
    matrix[:, -1] = ord(";")
    if (number >= 10 ** (digits - 1)).all():  # every version as long: no NUL to leave out
        return matrix.tobytes()
    flat = matrix.reshape(-1)
    return bytes(flat[flat != 0].tobytes())


def _grouped(
    session: Session,
    count: int,
    who: npt.NDArray[np.intp],
    row_terms: npt.NDArray[np.intp],
    row: Callable[[int], Row],
    snapshot: str,
    held: Held,
) -> Signatures:
    """Signatures of ``count`` subjects from the versions in force: per version its
    subject's position (``who``) and its terms number; ``row`` makes a version's row for
    the few whose terms are read or grouped by hand; ``held`` is ``_split(who, count)``."""
    terms = _Terms(session)
    terms.read([row(i) for i in np.unique(row_terms, return_index=True)[1].tolist()])
    ids: dict[tuple[str, ...], int] = {}
    facts: list[list[ConsentFact]] = []

    def number(group: list[Row]) -> int:
        key = tuple(sorted(r[4] for r in group))
        known = ids.get(key)
        if known is None:
            known = ids[key] = len(facts)
            facts.append([terms.fact(r) for r in group])
        return known

    of_subject = np.full(count, number([]), dtype=np.intp)
    single, several = held
    # One consent: the signature follows from its terms.
    seen, carrier = np.unique(row_terms[single], return_index=True)
    by_terms = np.zeros(int(row_terms.max(initial=-1)) + 1, dtype=np.intp)
    for t, i in zip(seen.tolist(), single[carrier].tolist(), strict=True):
        by_terms[t] = number([row(i)])
    of_subject[who[single]] = by_terms[row_terms[single]]
    # Several consents: grouped one subject at a time.
    for n, group in several.items():
        of_subject[n] = number([row(i) for i in group])
    return Signatures(of_subject, facts, snapshot)
