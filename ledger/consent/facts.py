"""Consent facts: what was in force for a set of subjects at an instant, and what it allows.

``effective_consents`` is the set-based query the decision path calls: one query per chunk
of subjects (or one query over a subquery, e.g. a dataset's subjects), never a query per
subject. ``decide`` applies the consent algebra to one subject's facts:

* a permit covers a request when it covers its AI purpose (explicit-only nodes need
  naming) and its DUO category (a permit naming no DUO category sets no disease limit);
* a deny matches when its purposes overlap the request's; deny beats permit;
* scopes limit both to images by modality, body part and study date. Missing image
  attributes fail closed: outside every permit's limit, inside every deny's.

Coverage depends only on (decision, purposes, request), so it is cached: a million
images with a few dozen distinct consent texts cost a few dozen tree walks.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Select, and_, bindparam, case, or_, select
from sqlalchemy.orm import Session

from ledger.consent.models import ConsentVersion
from ledger.consent.purposes import Request, tree
from ledger.db import driver_rows
from ledger.dbtypes import table_of

CHUNK = 5_000
WHOLE_TABLE_AFTER = 4 * CHUNK


def _inside(values: frozenset[str], value: str | None, missing: bool) -> bool:
    return missing if not value else value.upper() in values


@dataclass(frozen=True)
class ScopeFact:
    modalities: frozenset[str] = frozenset()
    body_parts: frozenset[str] = frozenset()
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def of(cls, scope: dict[str, Any]) -> ScopeFact:
        def day(v: Any) -> date | None:
            return date.fromisoformat(v) if isinstance(v, str) and v else None

        return cls(
            frozenset(scope.get("modalities") or ()),
            frozenset(scope.get("body_parts") or ()),
            day(scope.get("study_date_from")),
            day(scope.get("study_date_to")),
        )

    @property
    def unlimited(self) -> bool:
        return not (self.modalities or self.body_parts or self.date_from or self.date_to)

    def contains(self, image: ImageFacts, *, missing: bool) -> bool:
        """Whether the image is inside; ``missing`` answers for an attribute it lacks."""
        if self.modalities and not _inside(self.modalities, image.modality, missing):
            return False
        if self.body_parts and not _inside(self.body_parts, image.body_part, missing):
            return False
        if self.date_from or self.date_to:
            if image.study_date is None:
                return missing
            if self.date_from and image.study_date < self.date_from:
                return False
            if self.date_to and image.study_date > self.date_to:
                return False
        return True

    def covers(self, other: ScopeFact) -> bool:
        """Every image inside ``other`` is inside this scope."""

        def subset(mine: frozenset[str], theirs: frozenset[str]) -> bool:
            return not mine or (bool(theirs) and theirs <= mine)

        return (
            subset(self.modalities, other.modalities)
            and subset(self.body_parts, other.body_parts)
            and (self.date_from is None or (other.date_from or date.min) >= self.date_from)
            and (self.date_to is None or (other.date_to or date.max) <= self.date_to)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "modalities": sorted(self.modalities),
            "body_parts": sorted(self.body_parts),
            "study_date_from": self.date_from,
            "study_date_to": self.date_to,
        }


@dataclass(frozen=True)
class ImageFacts:
    modality: str | None = None
    body_part: str | None = None
    study_date: date | None = None


@dataclass(frozen=True)
class ConsentFact:
    consent_id: str
    version: int
    subject_id: str
    decision: str
    purposes: tuple[str, ...]
    modifiers: tuple[str, ...]
    scope: ScopeFact
    # Equal for facts with the same decision, purposes, modifiers and scope, and cheap to
    # hash: grouping 200k subjects by what their consents say compares these, not scopes.
    terms: int

    def label(self) -> str:
        purposes = ", ".join(self.purposes)
        return f"consent {self.consent_id} v{self.version} ({self.decision} {purposes})"


@dataclass
class Outcome:
    permitted: bool
    reasons: list[str]
    permits: list[ConsentFact] = field(default_factory=list)
    denies: list[ConsentFact] = field(default_factory=list)
    legacy_research: bool = False

    @property
    def modifiers(self) -> set[str]:
        return {m for c in self.permits for m in c.modifiers}


@lru_cache(maxsize=65_536)
def permit_covers(purposes: tuple[str, ...], request: Request) -> bool:
    t = tree()
    ai = [p for p in purposes if t.branch(p) == "ai"]
    duo = [p for p in purposes if t.branch(p) == "duo"]
    if request.ai is not None:
        if not any(t.permit_covers(p, request.ai) for p in ai):
            return False
        if not duo:
            return True
    elif not duo:
        return False
    wanted = request.duo or "GRU"
    return any(t.permit_covers(d, wanted) for d in duo)


@lru_cache(maxsize=65_536)
def deny_matches(purposes: tuple[str, ...], request: Request) -> bool:
    t = tree()
    ai = [p for p in purposes if t.branch(p) == "ai"]
    duo = [p for p in purposes if t.branch(p) == "duo"]
    if ai and (request.ai is None or not any(t.deny_covers(p, request.ai) for p in ai)):
        return False
    wanted = request.duo or "GRU"
    return not duo or any(t.overlaps(d, wanted) for d in duo)


@lru_cache(maxsize=65_536)
def legacy_covers(purposes: tuple[str, ...], request: Request) -> bool:
    """A broad research permit (GRU/HMB) with no AI purpose, for an AI request: the
    consent engine does not count it, a policy may (DESIGN §3)."""
    t = tree()
    if request.ai is None or any(t.branch(p) == "ai" for p in purposes):
        return False
    wanted = request.duo or "GRU"
    return any(t.permit_covers(d, wanted) for d in purposes if t.branch(d) == "duo")


def decide(
    facts: Iterable[ConsentFact], request: Request, image: ImageFacts | None = None
) -> Outcome:
    """The consent algebra for one subject (and optionally one image)."""
    permits: list[ConsentFact] = []
    denies: list[ConsentFact] = []
    partial_denies: list[ConsentFact] = []
    limited: list[ConsentFact] = []  # would cover, but for another research category
    legacy = False
    for fact in facts:
        if fact.decision == "deny":
            if not deny_matches(fact.purposes, request):
                continue
            if image is None:
                (denies if fact.scope.unlimited else partial_denies).append(fact)
            elif fact.scope.contains(image, missing=True):
                denies.append(fact)
        elif permit_covers(fact.purposes, request):
            if image is None or fact.scope.contains(image, missing=False):
                permits.append(fact)
        elif legacy_covers(fact.purposes, request):
            legacy = True
        elif request.ai and permit_covers(
            tuple(p for p in fact.purposes if tree().branch(p) == "ai"), Request(request.ai, None)
        ):
            limited.append(fact)
    if image is None and partial_denies and permits:
        # A deny whose limits contain a permit's limits leaves that permit nothing.
        covering = {d for p in permits for d in partial_denies if d.scope.covers(p.scope)}
        permits = [p for p in permits if not any(d.scope.covers(p.scope) for d in partial_denies)]
        if not permits:
            denies = sorted(covering, key=lambda d: d.consent_id)
    if denies:
        reasons = [f"denied by {d.label()}" for d in denies]
        return Outcome(False, reasons, permits, denies, legacy)
    if not permits:
        if legacy:
            reasons = [
                f"only a broad research consent without an AI purpose covers {request}; "
                "permitted only where the legacy-research policy is enabled"
            ]
        else:
            where = " for this image" if image is not None else ""
            reasons = [f"no consent in force permits {request}{where}"]
            reasons += [
                f"{f.label()} limits use to research of that category; name a category "
                "it covers in the request (e.g. ai.training,HMB)"
                for f in limited
            ]
        return Outcome(False, reasons, [], [], legacy)
    reasons = [f"permitted by {p.label()}" for p in permits]
    reasons += [f"except images within the scope of {d.label()}" for d in partial_denies]
    return Outcome(True, reasons, permits, partial_denies, legacy)


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
        return [row for row in rows if row[3]]
    latest: dict[str, int] = {}  # amended or withdrawn consents: the highest version wins
    for row in rows:
        if row[0] in amended and latest.get(row[0], 0) < row[1]:
            latest[row[0]] = row[1]
    return [r for r in rows if r[3] and (r[0] not in amended or latest[r[0]] == r[1])]


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
    subjects: Sequence[str],
    number_of: Mapping[str, int] | None = None,
) -> Signatures:
    """Consent signatures for a dataset's subjects as of ``as_of``: the set-based path of
    an evaluation over hundreds of thousands of subjects. Most subjects hold one consent,
    so rows are matched to subjects and grouped with array operations; only subjects
    holding several consents are looked at one by one. ``number_of`` (subject id →
    position in ``subjects``) saves building it again when the caller has it."""
    rows = _rows(session, as_of, subjects)
    if not subjects:
        return Signatures(np.zeros(0, np.intp), [[]], hashlib.sha256(b"").hexdigest())
    if number_of is None:
        number_of = {sid: n for n, sid in enumerate(subjects)}
    spot = np.array([number_of.get(r[2], -1) for r in rows], dtype=np.intp)
    mine = spot >= 0
    who = spot[mine]  # per row kept, the position of its subject in ``subjects``
    kept = [rows[i] for i in np.flatnonzero(mine).tolist()]

    texts: dict[str, int] = {}
    row_terms = np.array([texts.setdefault(r[4], len(texts)) for r in kept], dtype=np.intp)
    terms = _Terms(session)
    terms.read([kept[i] for i in np.unique(row_terms, return_index=True)[1].tolist()])
    held = np.bincount(who, minlength=len(subjects))
    ids: dict[tuple[str, ...], int] = {}
    facts: list[list[ConsentFact]] = []

    def number(group: list[Row]) -> int:
        key = tuple(sorted(r[4] for r in group))
        known = ids.get(key)
        if known is None:
            known = ids[key] = len(facts)
            facts.append([terms.fact(r) for r in group])
        return known

    of_subject = np.full(len(subjects), number([]), dtype=np.intp)
    # What each subject contributes to the snapshot: its versions in force, in order.
    entry = np.full(len(subjects), "", dtype=object)
    # One consent: the signature follows from its terms.
    single = np.flatnonzero(held[who] == 1)
    distinct, carrier = np.unique(row_terms[single], return_index=True)
    by_terms = np.zeros(len(texts), dtype=np.intp)
    for t, i in zip(distinct.tolist(), single[carrier].tolist(), strict=True):
        by_terms[t] = number([kept[i]])
    of_subject[who[single]] = by_terms[row_terms[single]]
    entry[who[single]] = [f"{r[2]}:{r[0]}:{r[1]};" for r in map(kept.__getitem__, single.tolist())]
    # Several consents: grouped one subject at a time.
    groups: dict[int, list[Row]] = {}
    for i in np.flatnonzero(held[who] > 1).tolist():
        groups.setdefault(int(who[i]), []).append(kept[i])
    for n, group in groups.items():
        of_subject[n] = number(group)
        entry[n] = "".join(sorted(f"{r[2]}:{r[0]}:{r[1]};" for r in group))
    if any(a > b for a, b in itertools.pairwise(subjects)):  # a dataset's come sorted
        entry = entry[np.argsort(np.array(subjects, dtype=object), kind="stable")]
    digest = hashlib.sha256("".join(entry.tolist()).encode()).hexdigest()
    return Signatures(of_subject, facts, digest)
