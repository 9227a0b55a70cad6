"""Which disease codes stored consents carry, and which of them do not normalise.

Consents recorded before disease codes named their system hold qualifiers such as
``DS:C34``, ``DS:c34.1`` or ``DS:MONDO_0004992``; a few may hold text no system reads
(``DS:lung-cancer``). The decision path normalises each qualifier where it reads it
(``diseases.lenient``): ``DS:C34`` means ``DS:ICD10CM:C34`` there, and a qualifier that does
not normalise is kept as it is and has no hierarchy, so a refusal of it matches every disease
request and a permit of it covers only the same text (fail closed).

Stored qualifiers are therefore **reported, not rewritten**. Each consent version's
purposes are also in the log entry that recorded it (``consent.recorded``, ``.amended``,
``.withdrawn``), whose hash the Merkle tree and the signed checkpoints commit to, and in
the sealed FHIR original where one came in. Rewriting the rows would leave ``ledger audit
verify`` green (it checks the log, not the tables) but make the consents table contradict
its own signed history, in a table that is otherwise only appended to; an auditor comparing
the two could not tell a normalisation from tampering. Reading them normalised changes
nothing a decision depends on, and this report (``ledger consents diseases``; migration
0016 prints its summary) names what an administrator should correct, by recording an
amended consent, which the log then records like any other change.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from ledger.consent import diseases
from ledger.consent.models import ConsentVersion
from ledger.dbtypes import table_of
from ledger.errors import InvalidInput

Status = Literal["canonical", "normalises", "unreadable"]


@dataclass(frozen=True)
class StoredDisease:
    """One distinct disease qualifier as stored (without ``DS:``) and what it is read as."""

    stored: str
    canonical: str | None  # None: it does not normalise (kept, no hierarchy)
    status: Status  # canonical as stored | normalises when read | unreadable
    hierarchy: bool  # whether a known hierarchy holds it (else it fails closed)
    label: str | None
    problem: str | None  # why it does not normalise
    versions: int  # consent versions naming it
    consents: int  # consents with any version naming it
    active: int  # consents whose latest version is active and names it


@dataclass(frozen=True)
class Report:
    codes: list[StoredDisease] = field(default_factory=list)

    @property
    def unreadable(self) -> list[StoredDisease]:
        return [c for c in self.codes if c.status == "unreadable"]

    def summary(self) -> dict[str, int]:
        count: dict[str, int] = {s: sum(c.status == s for c in self.codes) for s in _STATUSES}
        return {
            "codes": len(self.codes),
            **count,
            "without_hierarchy": sum(not c.hierarchy for c in self.codes),
        }

    def as_json(self, only_unreadable: bool = False) -> dict[str, Any]:
        codes = self.unreadable if only_unreadable else self.codes
        return {"summary": self.summary(), "codes": [c.__dict__ for c in codes]}


_STATUSES: tuple[Status, ...] = ("canonical", "normalises", "unreadable")


def classify(stored: str) -> tuple[str | None, Status, str | None]:
    """What a stored qualifier is read as: (canonical or None, status, why not)."""
    try:
        canonical = diseases.normalise(stored)
    except InvalidInput as exc:
        return None, "unreadable", exc.detail
    return canonical, "canonical" if canonical == stored else "normalises", None


def report(session: Session) -> Report:
    """Every distinct ``DS`` qualifier of every stored consent version, with counts."""
    cv = table_of(ConsentVersion)
    naming = cast(cv.c.purposes, Text).like('%"DS:%')
    rows = session.execute(
        select(cv.c.consent_id, cv.c.version, cv.c.status, cv.c.purposes).where(naming)
    ).all()
    named = select(cv.c.consent_id).where(naming)
    latest_rows = session.execute(
        select(cv.c.consent_id, func.max(cv.c.version))
        .where(cv.c.consent_id.in_(named))
        .group_by(cv.c.consent_id)
    ).all()
    latest: dict[str, int] = {str(c): int(v) for c, v in latest_rows}
    versions: dict[str, int] = defaultdict(int)
    consents: dict[str, set[str]] = defaultdict(set)
    active: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        for purpose in r.purposes or []:
            base, sep, qualifier = str(purpose).partition(":")
            if base != "DS" or not sep:
                continue
            versions[qualifier] += 1
            consents[qualifier].add(r.consent_id)
            if r.status == "active" and latest.get(r.consent_id) == r.version:
                active[qualifier].add(r.consent_id)
    codes = []
    for stored in sorted(versions):
        canonical, status, problem = classify(stored)
        codes.append(
            StoredDisease(
                stored=stored,
                canonical=canonical,
                status=status,
                hierarchy=canonical is not None and diseases.known(canonical),
                label=diseases.label(canonical) if canonical else None,
                problem=problem,
                versions=versions[stored],
                consents=len(consents[stored]),
                active=len(active[stored]),
            )
        )
    return Report(codes)


__all__ = ["Report", "StoredDisease", "classify", "report"]
