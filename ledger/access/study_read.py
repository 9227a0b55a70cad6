"""What an authorize cache miss reads: a study's images and its subjects' consent versions,
in one statement (one round trip, one snapshot), and the consent facts in force chosen
from them in Python (``ledger.consent.chosen``).

It replaces ``image_rows.of_study`` followed by ``in_force.effective_consents`` on this
path: those were three statements per study (images, versions, terms), each through
SQLAlchemy's execution machinery, and on PostgreSQL a transaction around them; together
they were most of a cold decision's time. The versions come back flagged in force by the
same SQL test ``in_force`` applies; what each terms key says is read once per process
(a terms key is a hash of what a consent says, so it never goes stale).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import dialect
from ledger.access.image_rows import ImageRow
from ledger.consent import chosen, time_limits
from ledger.consent.facts import ConsentFact, ScopeFact
from ledger.consent.models import ConsentVersion
from ledger.db import bind_processor
from ledger.dbtypes import table_of

CHUNK = 2_000  # studies per statement (each named twice: 4,000 parameters)
TERMS_MAX = 100_000
Sessions = Callable[[], Session]

_IMAGE = ", ".join(ImageRow._fields)
_NO_IMAGE = ", ".join(
    {"id": "consent_id", "subject_id": "subject_id"}.get(f, "NULL") for f in ImageRow._fields
)
_NO_ROW = ", ".join("NULL" for _ in ImageRow._fields)
# ``in_force._query``'s test, in driver SQL: active, and valid at the instant.
_IN_FORCE = (
    "CASE WHEN status = 'active' AND valid_from <= ? "
    "AND (valid_until IS NULL OR valid_until > ?) THEN 1 ELSE 0 END"
)


LIST_FROM = 64  # studies from which PostgreSQL is given them as one array


@lru_cache(maxsize=64)
def _sql(count: int, mark: bool) -> str:
    """Images of ``count`` studies, then the versions of their subjects recorded by the
    instant: ``study_uid, <ImageRow>, version, in force, terms, valid_from``, the last four
    NULL on image rows; a version row carries its consent id in ``id``. With ``mark``, a
    last row gives the log's decision mark in ``version`` (and NULL ``id``), read in the
    same snapshot as the rest. (An array parameter, ``= ANY(?)``, would give one
    statement text for any count, but PostgreSQL's generic plan for it scans the tables:
    five times slower for one study.)

    ``count`` 0 is PostgreSQL's form for a batch (``LIST_FROM`` studies or more): the
    studies as one array, joined through ``unnest``. PostgreSQL plans an IN list of
    1,000 values in ~11 ms (each value is weighed against the column's statistics), the
    join in ~0.3 ms: half a 1,000-study read."""
    if count:
        studies = f"IN ({', '.join('?' * count)})"
        images = f"FROM images WHERE study_uid {studies}"
        head = ""
    else:
        images = "FROM images JOIN wanted ON images.study_uid = wanted.uid"
        head = "WITH wanted AS (SELECT unnest(CAST(? AS TEXT[])) AS uid) "
    sql = (
        f"{head}SELECT study_uid, {_IMAGE}, NULL, NULL, NULL, NULL {images} "  # noqa: S608
        f"UNION ALL SELECT NULL, {_NO_IMAGE}, version, {_IN_FORCE}, terms, valid_from "
        f"FROM consents WHERE recorded_at <= ? AND subject_id IN "
        f"(SELECT subject_id {images})"
    )
    if mark:
        sql += (
            f" UNION ALL SELECT NULL, {_NO_ROW}, seq, NULL, NULL, NULL "  # noqa: S608
            "FROM log_marks WHERE name = ?"
        )
    return sql


def statement(
    bind: Any, studies: Sequence[str], as_of: datetime, *, mark: str | None = None
) -> tuple[str, list[Any]]:
    """The driver SQL and parameters reading ``studies`` (at most ``CHUNK``) as of
    ``as_of``, and the log mark named ``mark`` if given; ``bind`` is an engine or a
    connection."""
    moment = _processor(bind.dialect)(as_of)
    count = len(studies)
    params: list[Any]
    if count >= LIST_FROM and dialect.is_postgres(bind):
        count, params = 0, [list(studies), moment, moment, moment]
    else:
        params = [*studies, moment, moment, moment, *studies]
    if mark is not None:
        params.append(mark)
    return dialect.driver_sql(bind, _sql(count, mark is not None)), params


@lru_cache(maxsize=8)
def _processor(dialect_: Any) -> Any:
    """How SQLAlchemy binds an instant compared with a consent's timestamps (on SQLite,
    the text it stores them as, which the SQL compares)."""
    processor = bind_processor(table_of(ConsentVersion).c.recorded_at.type, dialect_)
    return processor or (lambda value: value)


@dataclass
class Read:
    """What the statement gave: the images of each study (erased ones left out), the
    consent versions of their subjects and the mark, when asked for (-1 when the log has
    none yet, as ``Authorizer.marks``)."""

    images: dict[str, list[ImageRow]]
    versions: list[chosen.Versioned]
    mark: int = -1


def parse(raw: Iterable[Sequence[Any]]) -> Read:
    """The statement's rows, told apart by their NULLs: an image has no version, the
    mark no id."""
    images: dict[str, list[ImageRow]] = {}
    versions: list[chosen.Versioned] = []
    mark = -1
    make = ImageRow._make
    for r in raw:
        if r[10] is None:
            row = make(r[1:10])
            if row.erased_at is None:
                images.setdefault(r[0], []).append(row)
        elif r[1] is None:
            mark = int(r[10])
        else:
            versions.append((r[1], r[10], r[2], r[11], r[12], r[13]))
    return Read(images, versions, mark)


# What a terms key says: decision, purposes, modifiers, scope, its number, its TS limits.
Entry = tuple[str, tuple[str, ...], tuple[str, ...], ScopeFact, int, tuple[str, ...]]


class Terms:
    """What each terms key says, read once per process, with a number per key never
    reused in the process (``ConsentFact.terms``: equal numbers, equal terms)."""

    def __init__(self) -> None:
        self._parsed: dict[str, Entry] = {}
        self._numbers = itertools.count()

    def of(self, versions: Iterable[chosen.Versioned], sessions: Sessions) -> dict[str, Entry]:
        """The entries of the terms keys of ``versions``; those not read yet are read in a
        session from ``sessions``. The caller keeps what this returns: another thread may
        empty the cache meanwhile."""
        parsed = self._parsed
        found: dict[str, Entry] = {}
        wanted: dict[str, str] = {}  # terms key: a consent carrying it
        for v in versions:
            key = v[4]
            if key in found or key in wanted:
                continue
            entry = parsed.get(key)
            if entry is None:
                wanted[key] = v[0]
            else:
                found[key] = entry
        if wanted:
            with sessions() as session:
                try:
                    found.update(self._read(session, wanted))
                finally:
                    session.rollback()
        return found

    def _read(self, session: Session, wanted: dict[str, str]) -> dict[str, Entry]:
        cv = table_of(ConsentVersion)
        carriers = sorted(set(wanted.values()))
        read: dict[str, Entry] = {}
        for i in range(0, len(carriers), CHUNK):
            query = select(
                cv.c.terms, cv.c.decision, cv.c.purposes, cv.c.modifiers, cv.c.scope
            ).where(cv.c.consent_id.in_(carriers[i : i + CHUNK]))
            for key, decision, purposes, modifiers, scope in session.execute(query):
                if key in wanted and key not in read:
                    read[key] = (
                        decision,
                        tuple(purposes),
                        tuple(modifiers),
                        ScopeFact.of(scope or {}),
                        next(self._numbers),
                        time_limits.of_terms(decision, modifiers),
                    )
        if len(self._parsed) + len(read) > TERMS_MAX:
            self._parsed.clear()
        self._parsed.update(read)
        return read


def facts(
    versions: Iterable[chosen.Versioned], as_of: datetime, entries: dict[str, Entry]
) -> dict[str, list[ConsentFact]]:
    """The consent facts in force at ``as_of`` among ``versions``, by subject."""
    out: dict[str, list[ConsentFact]] = {}
    for r in chosen.in_force(versions, as_of, lambda key: entries[key][5]):
        decision, purposes, modifiers, scope, number, _ = entries[r[4]]
        out.setdefault(r[2], []).append(
            ConsentFact(r[0], r[1], r[2], decision, purposes, modifiers, scope, number)
        )
    return out
