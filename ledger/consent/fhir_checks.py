"""Checks over a whole FHIR Consent before it is mapped, each adding every problem it
finds (so one 422 names them all): elements the ledger refuses, unknown modifiers, the
decision and whether a purpose the ledger knows is named."""

from __future__ import annotations

from typing import Any

from ledger.consent import fhir_elements as elements
from ledger.consent.purposes import tree
from ledger.consent.schemas import Decision

PURPOSE_SYSTEM = "urn:ledger:purpose"
MODIFIER_SYSTEM = "urn:ledger:modifier"
DUO_SYSTEM = "http://purl.obolibrary.org/obo/duo"
# The ontology's own PURL is sent by some implementers (NCPI, INCLUDE): read as the same.
DUO_SYSTEMS = (DUO_SYSTEM, "http://purl.obolibrary.org/obo/duo.owl")
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OPT = {
    "OPTIN": Decision.permit,
    "OPTINR": Decision.permit,
    "OPTOUT": Decision.deny,
    "OPTOUTE": Decision.deny,
}
ACCEPTED_PURPOSES = (
    f"{PURPOSE_SYSTEM} (the ledger's purpose tree, GET /v1/purposes), "
    f"{DUO_SYSTEM} (DUO purposes and modifiers, e.g. DUO:0000006; DUO:0000007 with the "
    "disease as a coding of ICD-10-CM, MONDO or DOID beside it), "
    f"{MODIFIER_SYSTEM} (modifiers)"
)


def _known_purpose(coding: dict[str, Any]) -> bool:
    system = coding.get("system")
    return system == PURPOSE_SYSTEM or (
        system in DUO_SYSTEMS and str(coding.get("code") or "") in _duo_purposes()
    )


def _duo_purposes() -> set[str]:
    """DUO purposes (``DUO:0000007`` too: its disease coding is checked where it is read)."""
    return {str(p.duo) for p in tree().purposes.values() if p.duo}


def audit(node: Any, table: dict[str, tuple[str, str]], at: str, out: list[dict[str, Any]]) -> None:
    """Every refused element of one element (root or provision), by its table."""
    for key in node:
        why = elements.refused(table, key)
        if why is not None:
            out.append({"element": f"{at}{key.lstrip('_')}", "msg": f"refused: {why}"})


def modifier_extensions(node: Any, at: str, out: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{at}.{key}" if at else key
            if key == "modifierExtension":
                if at:  # the root's and provisions' are reported by _audit
                    out.append({"element": where, "msg": "refused: an unknown modifier"})
                continue
            if key != "provision":
                modifier_extensions(value, where, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            modifier_extensions(value, f"{at}[{i}]", out)


def provisions_of(resource: dict[str, Any], version: str) -> list[tuple[str, dict[str, Any]]]:
    """Every provision with where it is, root first, depth first."""
    roots = resource.get("provision")
    if version == "R4":
        start = [("provision", roots)] if isinstance(roots, dict) else []
    else:
        start = [(f"provision[{i}]", p) for i, p in enumerate(roots or [])]
    out: list[tuple[str, dict[str, Any]]] = []

    def visit(at: str, node: dict[str, Any]) -> None:
        out.append((at, node))
        for i, child in enumerate(node.get("provision") or []):
            visit(f"{at}.provision[{i}]", child)

    for at, node in start:
        visit(at, node)
    return out


def decision_of(
    resource: dict[str, Any], version: str, out: list[dict[str, Any]]
) -> Decision | None:
    """The root decision, from every element that states one; a contradiction is refused."""
    stated: list[tuple[str, Decision]] = []
    if version == "R4":
        root = resource.get("provision") or {}
        kind = root.get("type")
        if kind is not None:
            if kind not in ("permit", "deny"):
                out.append({"element": "provision.type", "msg": f"{kind!r} is not permit or deny"})
                return None
            stated.append(("provision.type", Decision(kind)))
        concepts = [("policyRule", resource.get("policyRule") or {})]
    else:
        kind = resource.get("decision")
        if kind is not None:
            if kind not in ("permit", "deny"):
                out.append({"element": "decision", "msg": f"{kind!r} is not permit or deny"})
                return None
            stated.append(("decision", Decision(kind)))
        concepts = [
            (f"regulatoryBasis[{i}]", c)
            for i, c in enumerate(resource.get("regulatoryBasis") or [])
        ]
    for at, concept in concepts:
        for coding in concept.get("coding") or []:
            code = str(coding.get("code") or "")
            if coding.get("system") in (None, ACT_CODE) and code in OPT:
                stated.append((at, OPT[code]))
    if not stated:
        element = "provision.type" if version == "R4" else "decision"
        rule = "policyRule" if version == "R4" else "regulatoryBasis"
        out.append(
            {
                "element": element,
                "msg": f"say permit or deny (or OPTIN/OPTOUT in {rule}); "
                "the ledger cannot guess a decision",
            }
        )
        return None
    first_at, first = stated[0]
    for at, other in stated[1:]:
        if other != first:
            out.append(
                {"element": at, "msg": f"says {other.value}, but {first_at} says {first.value}"}
            )
            return None
    return first


def purpose_problems(
    provisions: list[tuple[str, dict[str, Any]]], version: str, out: list[dict[str, Any]]
) -> None:
    """A consent names at least one purpose the ledger knows (nested provisions inherit)."""
    if not provisions:
        element = "provision" if version == "R4" else "provision[0]"
        out.append(
            {
                "element": f"{element}.purpose",
                "msg": f"names no purpose (found none); accepted code systems: {ACCEPTED_PURPOSES}",
            }
        )
        return
    root_at, root = provisions[0]
    codings = [c for c in root.get("purpose") or [] if isinstance(c, dict)]
    if any(_known_purpose(c) for c in codings):
        return
    found = ", ".join(f"{c.get('system')}|{c.get('code')}" for c in codings) or "none"
    out.append(
        {
            "element": f"{root_at}.purpose",
            "msg": f"names no purpose the ledger knows (found {found}); accepted code "
            f"systems: {ACCEPTED_PURPOSES}",
        }
    )
