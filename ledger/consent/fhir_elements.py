"""What the ledger does with every element of a FHIR Consent, R4 (R4B) and R5.

One table drives the import (an element marked ``REFUSED`` is a 422 naming it), and the
README's table says the same in words (``tests/consent/test_fhir_elements.py`` checks that
both list every element ``fhir.resources`` knows). Nothing is dropped silently: an element
is either mapped onto what the ledger enforces, kept (sealed, and returned on export)
without changing what is permitted, left out (the narrative, which restricts nothing), or
refused.

``_x`` keys (extensions on primitive values) follow their element; ``modifierExtension``
anywhere in the resource is refused, since an unknown modifier changes the meaning.
"""

from __future__ import annotations

from typing import Final

MAPPED: Final = "mapped"
KEPT: Final = "kept"
LEFT_OUT: Final = "left out"
REFUSED: Final = "refused"

_REF_NOTE = "kept; references to the patient become the subject reference"

_COMMON_ROOT: dict[str, tuple[str, str]] = {
    "resourceType": (MAPPED, "must be Consent"),
    "id": (MAPPED, "the ledger's consent id replaces the sender's"),
    "meta": (KEPT, "kept; versionId and lastUpdated are the ledger's"),
    "implicitRules": (REFUSED, "rules the ledger cannot know it follows"),
    "language": (KEPT, "kept"),
    "text": (
        LEFT_OUT,
        "not kept or returned: a narrative usually names the patient; it restricts nothing",
    ),
    "contained": (
        MAPPED,
        "a contained Patient names the subject and is not kept; other resources are kept",
    ),
    "extension": (KEPT, "kept, not interpreted (a modifierExtension is refused)"),
    "modifierExtension": (REFUSED, "changes the meaning in a way the ledger cannot know"),
    "identifier": (KEPT, "kept; conditional create and search by identifier (keyed hash)"),
    "status": (MAPPED, "active imports; on update, inactive withdraws; others refused"),
    "category": (KEPT, "kept, not interpreted"),
    "sourceAttachment": (KEPT, "kept"),
    "sourceReference": (KEPT, "kept"),
    "verification": (KEPT, _REF_NOTE),
    "provision": (MAPPED, "see the provision table"),
}

ROOT: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "R4": {
        **_COMMON_ROOT,
        "scope": (KEPT, "kept, not interpreted: the provisions' purposes decide"),
        "patient": (
            MAPPED,
            "the subject (by identifier, contained or Bundle Patient); "
            "returned as the subject reference",
        ),
        "dateTime": (KEPT, "kept as sent; search parameter date"),
        "performer": (KEPT, _REF_NOTE),
        "organization": (KEPT, "kept (the custodian)"),
        "policy": (KEPT, "kept, not evaluated: the provisions state what is permitted"),
        "policyRule": (
            MAPPED,
            "v3-ActCode OPTIN/OPTINR → permit, OPTOUT/OPTOUTE → deny, unless the root "
            "provision's type says so (a contradiction is refused); other codes kept",
        ),
    },
    "R5": {
        **_COMMON_ROOT,
        "subject": (
            MAPPED,
            "the subject (a Patient: by identifier, contained or Bundle Patient); "
            "returned as the subject reference",
        ),
        "date": (KEPT, "kept as sent; search parameter date"),
        "period": (MAPPED, "validity of every provision that sets none"),
        "grantor": (KEPT, _REF_NOTE),
        "grantee": (
            REFUSED,
            "limits who may have access; the decision path cannot enforce it",
        ),
        "manager": (KEPT, "kept"),
        "controller": (KEPT, "kept"),
        "regulatoryBasis": (
            MAPPED,
            "v3-ActCode OPTIN/OPTINR → permit, OPTOUT/OPTOUTE → deny (must agree with "
            "decision); other codes kept",
        ),
        "policyBasis": (KEPT, "kept, not evaluated: the provisions state what is permitted"),
        "policyText": (KEPT, "kept"),
        "decision": (MAPPED, "permit or deny, for the root provision"),
    },
}

_ACTOR = "limits who may have access; the decision path cannot enforce it"
_COMMON_PROVISION: dict[str, tuple[str, str]] = {
    "id": (KEPT, "kept"),
    "extension": (KEPT, "kept, not interpreted"),
    "modifierExtension": (REFUSED, "changes the meaning in a way the ledger cannot know"),
    "period": (MAPPED, "validity (valid_from, valid_until)"),
    "actor": (REFUSED, _ACTOR),
    "action": (REFUSED, "limits the actions permitted; the ledger releases images only"),
    "securityLabel": (REFUSED, "limits data by label; images carry none"),
    "purpose": (
        MAPPED,
        "purposes and modifiers: urn:ledger:purpose, DUO (DUO:0000007 with the disease as an "
        "ICD-10-CM, MONDO or DOID coding beside it), urn:ledger:modifier; other codes refused",
    ),
    "code": (MAPPED, "DICOM (DCM) modality codes limit the modalities; other codes refused"),
    "dataPeriod": (MAPPED, "study dates"),
    "data": (REFUSED, "limits the consent to named resources"),
    "provision": (
        MAPPED,
        "exceptions with the opposite decision, one level deep; deeper is refused",
    ),
}

PROVISION: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "R4": {
        **_COMMON_PROVISION,
        "type": (
            MAPPED,
            "root: the decision (with policyRule); nested: must reverse its parent",
        ),
        "class": (REFUSED, "limits the consent to classes of data"),
    },
    "R5": {
        **_COMMON_PROVISION,
        "documentType": (REFUSED, "limits the consent to document types"),
        "resourceType": (REFUSED, "limits the consent to resource types"),
        "expression": (REFUSED, "a computable rule the ledger cannot evaluate"),
    },
}


def refused(table: dict[str, tuple[str, str]], key: str) -> str | None:
    """Why ``key`` is refused, or None when the ledger honours it. Unknown keys (which
    validation lets through only as ``_x`` or comments) follow their element."""
    action, why = table.get(key.lstrip("_"), (KEPT, ""))
    return why if action == REFUSED else None
