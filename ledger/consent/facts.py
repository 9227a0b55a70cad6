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

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, Text, bindparam, cast, literal, or_, select
from sqlalchemy.orm import Session

from ledger.consent.models import ConsentVersion
from ledger.consent.purposes import Request, tree
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
    """Versions in force at ``as_of``: recorded by then, not superseded by a version
    recorded by then, active, and valid at that instant. JSON columns come back as text so
    identical consent texts are parsed once, not once per row."""
    cv = table_of(ConsentVersion).alias("cv")
    newer = table_of(ConsentVersion).alias("newer")
    superseded = (
        select(literal(1))
        .where(
            newer.c.consent_id == cv.c.consent_id,
            newer.c.version > cv.c.version,
            newer.c.recorded_at <= as_of,
        )
        .exists()
    )
    query = select(
        cv.c.consent_id,
        cv.c.version,
        cv.c.subject_id,
        cv.c.decision,
        cast(cv.c.purposes, Text),
        cast(cv.c.modifiers, Text),
        cast(cv.c.scope, Text),
    ).where(
        cv.c.recorded_at <= as_of,
        cv.c.status == "active",
        cv.c.valid_from <= as_of,
        or_(cv.c.valid_until.is_(None), cv.c.valid_until > as_of),
        ~superseded,
    )
    if subject_filter is not None:
        query = query.where(subject_filter(cv.c.subject_id))
    return query


@lru_cache(maxsize=1)
def _by_ids() -> Any:
    moment = bindparam("as_of", type_=table_of(ConsentVersion).c.recorded_at.type)
    return _query(moment, lambda c: c.in_(bindparam("ids", expanding=True)))


def effective_consents(
    session: Session,
    as_of: datetime,
    subjects: Sequence[str] | Select[Any] | None = None,
) -> dict[str, list[ConsentFact]]:
    """Consents in force at ``as_of`` (as known at ``as_of``), grouped by subject.

    ``subjects`` is a list of ids, a SELECT of ids (e.g. a dataset's subjects, so the work
    stays in the database), or None for everyone.
    """
    out: dict[str, list[ConsentFact]] = defaultdict(list)
    texts: dict[str, Any] = {}
    scopes: dict[str, ScopeFact] = {}

    def parsed(text: str | Any) -> Any:
        if not isinstance(text, str):  # a driver that already decoded JSON
            return text
        value = texts.get(text)
        if value is None:
            value = texts[text] = json.loads(text)
            if isinstance(value, list):
                value = texts[text] = tuple(value)
        return value

    batches: Iterable[Any]
    if subjects is None:
        batches = [session.execute(_query(as_of, None))]
    elif isinstance(subjects, Select):
        batches = [session.execute(_query(as_of, lambda c, q=subjects: c.in_(q)))]
    else:
        ids = list(dict.fromkeys(subjects))
        if len(ids) > WHOLE_TABLE_AFTER:
            # Tens of thousands of subjects: one scan of the table beats many IN lists.
            wanted = set(ids)
            everyone = effective_consents(session, as_of, None)
            return {sid: facts for sid, facts in everyone.items() if sid in wanted}
        # One statement built once and reused: building it costs more than running it
        # when a call asks about a handful of subjects (authorize, release re-checks).
        batches = (
            session.execute(_by_ids(), {"as_of": as_of, "ids": ids[i : i + CHUNK]})
            for i in range(0, len(ids), CHUNK)
        )
    for rows in batches:
        for cid, version, sid, decision, purposes, modifiers, scope in rows:
            scope_fact = scopes.get(scope)
            if scope_fact is None:
                scope_fact = scopes[scope] = ScopeFact.of(parsed(scope) or {})
            out[sid].append(
                ConsentFact(
                    cid, version, sid, decision, parsed(purposes), parsed(modifiers), scope_fact
                )
            )
    return out
