"""TS (DUO:0000025, time limit on use): a permit carrying it is no longer in force after its
end, exactly like ``valid_until``. ``ledger.consent.in_force`` drops such versions from the
consents it reads, so every decision, release's re-check of each image included, stops
counting them.

A TS end is either a date (the last day of use) or months from the version's
``valid_from`` (``ledger.consent.modifiers.use_ends``), so it is weighed per version; only
versions whose terms carry TS are looked at (their ``valid_from`` read in one query), and
which terms do is remembered per terms key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.consent import modifiers as consent_modifiers
from ledger.consent.models import ConsentVersion
from ledger.dbtypes import table_of

CHUNK = 5_000
Row = tuple[str, int, str, int, str]  # consent, version, subject, in force, terms key


# Per terms key, the TS modifiers of a permit with those terms (empty for most). Terms keys
# are hashes of what a consent says, so what is remembered here never goes stale.
_BY_TERMS: dict[str, tuple[str, ...]] = {}


def _read(session: Session, carriers: dict[str, tuple[str, int]]) -> None:
    """Remember the TS modifiers of each terms key not seen yet, read from one version
    (consent id, version) that carries it."""
    wanted = {k: c for k, c in carriers.items() if k not in _BY_TERMS}
    if not wanted:
        return
    if len(_BY_TERMS) > 100_000:
        _BY_TERMS.clear()
    cv = table_of(ConsentVersion)
    ids = sorted({cid for cid, _ in wanted.values()})
    for i in range(0, len(ids), CHUNK):
        for key, decision, modifiers in session.execute(
            select(cv.c.terms, cv.c.decision, cv.c.modifiers).where(
                cv.c.consent_id.in_(ids[i : i + CHUNK])
            )
        ):
            if key in wanted:
                _BY_TERMS[key] = of_terms(decision, modifiers)
    for key in wanted:
        _BY_TERMS.setdefault(key, ())


def of_terms(decision: str, modifiers: Sequence[str] | None) -> tuple[str, ...]:
    """The TS modifiers that limit a version with these terms in time: a permit's (a
    deny's TS limits nothing)."""
    if decision != "permit":
        return ()
    return tuple(m for m in modifiers or () if consent_modifiers.base(m) == "TS")


def passed(limits: Sequence[str], valid_from: datetime, as_of: datetime) -> bool:
    """Whether a version carrying TS ``limits`` and valid from ``valid_from`` is past its
    time limit at ``as_of`` (naive datetimes are UTC)."""
    start = valid_from if valid_from.tzinfo else valid_from.replace(tzinfo=UTC)
    moment = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    ends = [consent_modifiers.use_ends(m, start) for m in limits]
    return any(e is not None and e <= moment for e in ends)


def ended(session: Session, as_of: datetime, rows: Sequence[Row]) -> set[tuple[str, int]]:
    """The versions among ``rows`` (permits carrying TS) whose time limit has passed at
    ``as_of``: TS ends a consent's use as ``valid_until`` does (DUO:0000025), so every
    decision, release's re-check included, stops counting it."""
    _read(session, {r[4]: (r[0], r[1]) for r in rows})
    limited = [r for r in rows if _BY_TERMS[r[4]]]
    if not limited:
        return set()
    cv = table_of(ConsentVersion)
    ids = sorted({r[0] for r in limited})
    starts: dict[tuple[str, int], datetime] = {}
    for i in range(0, len(ids), CHUNK):
        for cid, version, valid_from in session.execute(
            select(cv.c.consent_id, cv.c.version, cv.c.valid_from).where(
                cv.c.consent_id.in_(ids[i : i + CHUNK])
            )
        ):
            starts[(cid, version)] = valid_from
    return {(r[0], r[1]) for r in limited if passed(_BY_TERMS[r[4]], starts[(r[0], r[1])], as_of)}


def within(session: Session, as_of: datetime, rows: list[Row]) -> list[Row]:
    """``rows`` without the versions whose time limit has passed at ``as_of``."""
    gone = ended(session, as_of, rows)
    return [r for r in rows if (r[0], r[1]) not in gone] if gone else rows


def limited(session: Session, carriers: Sequence[Row]) -> list[tuple[str, ...]]:
    """Per row of ``carriers`` (one per terms key), the TS modifiers of its terms."""
    _read(session, {r[4]: (r[0], r[1]) for r in carriers})
    return [_BY_TERMS[r[4]] for r in carriers]
