"""What a request states beyond its purpose, and what a grant obliges its holder to do.

Some DUO modifiers are conditions on the requester rather than limits on the data: PUB
(publish the results), RTN (return results to the source), COL (collaborate with the study
team: the collaborator is named), MOR (publish nothing before a date), GSO (a genetic
study), PS (the project, named), CC (clinical care: opens ``ai.inference`` on a consent
carrying it). A request states
them when it is filed; a consent carrying one serves only a request that states it (the
policies refuse the others by name), and the grant carries every condition its images need
as an obligation (claim ``obligations``), shown to the steward and the pipeline.

A request's conditions are stored as a small JSON object (``AccessRequest.conditions``):
``publication``, ``return_of_results`` (true when stated), ``collaborator`` (a name) and
``no_publication_before`` (a date), ``project`` (a code), ``clinical_care`` and
``genetic_study`` (true when stated); absent keys were not stated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from ledger.access.classes import ImageClass
from ledger.consent.purposes import Purpose


def stored(
    *,
    publication: bool,
    return_of_results: bool,
    collaborator: str | None,
    no_publication_before: date | None,
    project: str | None = None,
    clinical_care: bool = False,
    genetic_study: bool = False,
) -> dict[str, Any]:
    """The stored form of what a request states (only what it states)."""
    out: dict[str, Any] = {}
    if project:
        out["project"] = project.upper()
    if clinical_care:
        out["clinical_care"] = True
    if genetic_study:
        out["genetic_study"] = True
    if publication:
        out["publication"] = True
    if return_of_results:
        out["return_of_results"] = True
    if collaborator:
        out["collaborator"] = collaborator
    if no_publication_before is not None:
        out["no_publication_before"] = no_publication_before.isoformat()
    return out


def commitments(conditions: Mapping[str, Any]) -> frozenset[str]:
    """The modifiers a request's stated conditions meet (PUB, RTN, COL)."""
    out = set()
    if conditions.get("publication"):
        out.add("PUB")
    if conditions.get("return_of_results"):
        out.add("RTN")
    if conditions.get("collaborator"):
        out.add("COL")
    if conditions.get("clinical_care"):
        out.add("CC")
    if conditions.get("genetic_study"):
        out.add("GSO")
    return frozenset(out)


def _day(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) and value else None


def with_conditions(
    purpose: Purpose,
    conditions: Mapping[str, Any],
    *,
    region: str | None,
    requester: str | None = None,
    institution: str | None = None,
) -> Purpose:
    """``purpose`` with what the request states and who the requester is."""
    return dataclasses.replace(
        purpose,
        commitments=commitments(conditions),
        no_publication_before=_day(conditions.get("no_publication_before")),
        region=region,
        requester=requester,
        institution=institution,
        project=conditions.get("project"),
    )


def obligations(
    purpose: Purpose, conditions: Mapping[str, Any], eligible_modifiers: Iterable[str]
) -> dict[str, Any]:
    """What the grant obliges: each stated condition some eligible image's consent asks
    for (by its modifier code), with the request's reference for IRB."""
    needed = set(eligible_modifiers)
    out: dict[str, Any] = {}
    if "PUB" in needed:
        out["publication"] = True
    if "RTN" in needed:
        out["return_of_results"] = True
    if "COL" in needed and conditions.get("collaborator"):
        out["collaborator"] = conditions["collaborator"]
    if "MOR" in needed and conditions.get("no_publication_before"):
        out["no_publication_before"] = conditions["no_publication_before"]
    if "IRB" in needed and purpose.irb_reference:
        out["irb_reference"] = purpose.irb_reference
    return out


def eligible_modifiers(classes: Iterable[ImageClass]) -> set[str]:
    """The modifier codes of the consents of every eligible image."""
    return {m for c in classes if c.eligible and c.facts for m in c.facts.modifiers}


def needs_a_person(sensitive: Iterable[str], eligible: set[str]) -> list[str]:
    """Why a request may not be approved automatically whatever the policies say: the
    DUOS "abstain" flags it carries (sensitive research), and research-specific
    restrictions (RS, DUO:0000012) on the consents of its eligible images."""
    out = []
    flags = sorted(set(sensitive))
    if flags:
        out.append(
            f"sensitive research ({', '.join(flags)}): a steward must review it; "
            "it is never approved automatically"
        )
    if "RS" in eligible:
        out.append(
            "consents of eligible images carry research-specific restrictions (RS): a "
            "steward must check the research against them; never approved automatically"
        )
    return out
