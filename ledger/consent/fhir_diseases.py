"""The disease of a ``DS`` purpose as FHIR codings: ``DUO:0000007`` and, beside it in the
same ``purpose`` list, a coding of the disease in its own code system.

DUO names disease-specific research as one term and leaves the disease to another ontology,
so a FHIR provision says it with two codings: the DUO term, and the disease coded as a
clinical system would code it. The system URIs are the ones HL7 Terminology (THO) registers
and FHIR implementers send: ``http://hl7.org/fhir/sid/icd-10-cm`` for ICD-10-CM and the OBO
Foundry PURLs ``http://purl.obolibrary.org/obo/mondo.owl`` and ``.../doid.owl`` for MONDO
and DOID (the ``.owl``-less PURLs are read too). Exported codings use those URIs, ICD-10-CM's
dotted code and the ontologies' CURIEs (``MONDO:0004992``); import also reads the bare number
some implementers send (``0004992``).
"""

from __future__ import annotations

from typing import Any

from ledger.consent import diseases
from ledger.errors import InvalidInput

DUO_DS = "DUO:0000007"
DUO_DS_DISPLAY = "disease specific research"
ICD10CM_URI = "http://hl7.org/fhir/sid/icd-10-cm"
MONDO_URI = "http://purl.obolibrary.org/obo/mondo.owl"
DOID_URI = "http://purl.obolibrary.org/obo/doid.owl"

# What each system is exported as, and every URI read as it on import.
URI_OF: dict[str, str] = {"ICD10CM": ICD10CM_URI, "MONDO": MONDO_URI, "DOID": DOID_URI}
SYSTEM_OF: dict[str, str] = {
    ICD10CM_URI: "ICD10CM",
    MONDO_URI: "MONDO",
    "http://purl.obolibrary.org/obo/mondo": "MONDO",
    DOID_URI: "DOID",
    "http://purl.obolibrary.org/obo/doid": "DOID",
}
KNOWN = ", ".join(f"{system} ({uri})" for system, uri in URI_OF.items())


def is_disease_coding(coding: dict[str, Any]) -> bool:
    return coding.get("system") in SYSTEM_OF


def qualifier(coding: dict[str, Any]) -> str:
    """The canonical qualifier (``MONDO:0004992``) of a disease coding; an unknown system or
    a code that does not fit its system is an InvalidInput naming it."""
    uri = coding.get("system")
    system = SYSTEM_OF.get(str(uri)) if uri else None
    if system is None:
        raise InvalidInput(
            f"unknown disease code system {uri!r} beside {DUO_DS} (disease-specific "
            f"research); known: {KNOWN}"
        )
    return diseases.from_system(system, str(coding.get("code") or ""))


def coding(disease: str) -> dict[str, str] | None:
    """The FHIR coding of a stored disease qualifier, or None where it does not normalise
    (a code kept from before systems were named: exported as the ledger's own purpose)."""
    try:
        canonical = diseases.normalise(disease)
    except InvalidInput:
        return None
    system, _, local = canonical.partition(":")
    uri = URI_OF.get(system)
    if uri is None:
        return None
    out = {"system": uri, "code": local if system == diseases.ICD10CM else canonical}
    name = diseases.label(canonical)
    if name:
        out["display"] = name
    return out
