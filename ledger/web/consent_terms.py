"""A consent's purposes and modifiers as a registrar or auditor reads them on the console:
each code with its label from the purpose tree and its DUO term, and each disease with the
code it is read as and its name where a hierarchy knows it.

Stored text is shown as stored beside what it means: a disease code recorded before code
systems were named (``DS:C34``) is shown with the code it is read as (``ICD10CM:C34``), and
one that does not normalise says so (it is kept, and fails closed)."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.consent import diseases
from ledger.consent.purposes import tree
from ledger.errors import InvalidInput


@dataclass(frozen=True)
class Term:
    code: str  # as stored
    label: str  # from the purpose tree, or a note where the tree does not know the code
    duo: str | None = None  # the DUO term (DUO:0000007)
    value: str | None = None  # a modifier's value (GS:FR → FR)
    disease: str | None = None  # the disease code it is read as (ICD10CM:C34.1)
    disease_label: str | None = None  # its name, where the hierarchy knows it
    note: str | None = None  # why a disease is not read as a known code


def purpose_terms(codes: list[str]) -> list[Term]:
    t = tree()
    out = []
    for code in codes:
        base, _, qualifier = code.partition(":")
        node = t.purposes.get(base)
        label = node.label if node else "not in the purpose tree"
        duo = node.duo if node else None
        if base != "DS" or not qualifier:
            out.append(Term(code, label, duo))
            continue
        try:
            canonical = diseases.normalise(qualifier)
        except InvalidInput:
            out.append(Term(code, label, duo, note="does not normalise: kept, fails closed"))
            continue
        out.append(
            Term(
                code,
                label,
                duo,
                disease=canonical,
                disease_label=diseases.label(canonical),
                note=None if diseases.known(canonical) else "no hierarchy holds it",
            )
        )
    return out


def modifier_terms(codes: list[str]) -> list[Term]:
    known = tree().modifiers
    out = []
    for code in codes:
        base, sep, value = code.partition(":")
        entry = known.get(base)
        label = str(entry["label"]) if entry else "not a known modifier"
        duo = str(entry["duo"]) if entry and entry.get("duo") else None
        out.append(Term(code, label, duo, value=value if sep else None))
    return out
