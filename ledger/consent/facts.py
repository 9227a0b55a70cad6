"""Consent facts and what they allow: the consent algebra.

Which facts were in force for a set of subjects at an instant is read by
``ledger.consent.in_force``. ``decide`` applies the consent algebra to one subject's facts:

* a permit covers a request when it covers its AI purpose (explicit-only nodes need
  naming) and its DUO category (a permit naming no DUO category sets no disease limit);
* a deny matches when its purposes overlap the request's; deny beats permit;
* scopes limit both to images by modality, body part and study date. Missing image
  attributes fail closed: outside every permit's limit, inside every deny's.

Coverage depends only on (decision, purposes, request), so it is cached: a million
images with a few dozen distinct consent texts cost a few dozen tree walks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

from ledger.consent.purposes import Purpose, tree


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
def permit_covers(purposes: tuple[str, ...], request: Purpose) -> bool:
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
    # Every disease the request names must be covered (by one permit: the caller asks per
    # permit, so a subject whose permits each cover one of two diseases is not covered).
    return all(any(t.permit_covers(d, w) for d in duo) for w in request.wanted)


@lru_cache(maxsize=65_536)
def deny_matches(purposes: tuple[str, ...], request: Purpose) -> bool:
    t = tree()
    ai = [p for p in purposes if t.branch(p) == "ai"]
    duo = [p for p in purposes if t.branch(p) == "duo"]
    if ai and (request.ai is None or not any(t.deny_covers(p, request.ai) for p in ai)):
        return False
    # A refusal matching any one of the diseases named refuses the request.
    return not duo or any(t.overlaps(d, w) for d in duo for w in request.wanted)


@lru_cache(maxsize=65_536)
def legacy_covers(purposes: tuple[str, ...], request: Purpose) -> bool:
    """A broad research permit (GRU/HMB) with no AI purpose, for an AI request: the
    consent engine does not count it, a policy may (DESIGN §3)."""
    t = tree()
    if request.ai is None or any(t.branch(p) == "ai" for p in purposes):
        return False
    duo = [d for d in purposes if t.branch(d) == "duo"]
    return bool(duo) and all(any(t.permit_covers(d, w) for d in duo) for w in request.wanted)


def clinical_cover(fact: ConsentFact, request: Purpose) -> bool:
    """A permit carrying CC (DUO:0000043, clinical care use) covers inference for a
    patient's care: an ``ai.inference`` request naming clinical care, within the permit's
    DUO categories (if it names any), whatever AI purposes it names."""
    if "CC" not in request.commitments or "CC" not in fact.modifiers or request.ai is None:
        return False
    t = tree()
    if "ai.inference" not in t.path(request.ai):
        return False
    duo = [d for d in fact.purposes if t.branch(d) == "duo"]
    return not duo or all(any(t.permit_covers(d, w) for d in duo) for w in request.wanted)


def decide(
    facts: Iterable[ConsentFact], request: Purpose, image: ImageFacts | None = None
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
        elif permit_covers(fact.purposes, request) or clinical_cover(fact, request):
            if image is None or fact.scope.contains(image, missing=False):
                permits.append(fact)
        elif legacy_covers(fact.purposes, request):
            legacy = True
        elif request.ai and permit_covers(
            tuple(p for p in fact.purposes if tree().branch(p) == "ai"), Purpose(request.ai)
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
