"""FHIR Consent out: the resource the ledger was sent, as kept, with the consent's state.

A consent that came in as FHIR is answered in the version it came in (R4 or R5) with every
element it was sent with, except the patient's identity, which is the pseudonymous
subject reference (``fhir_patient.pseudonymise``), and the narrative. Its ``status`` and
(R5) ``period`` follow the consent: a withdrawn consent is ``inactive`` from the moment
of withdrawal. A consent recorded through the JSON API or CSV is answered as a generated
R5 Consent, its diseases as ``DUO:0000007`` with a disease coding beside it.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from fhir.resources.consent import Consent as ConsentR5

from ledger.canonical import canonical
from ledger.clock import timestamp
from ledger.consent import fhir_diseases
from ledger.consent.fhir_checks import DCM_SYSTEM, DUO_SYSTEM, MODIFIER_SYSTEM, PURPOSE_SYSTEM
from ledger.consent.fhir_patient import subject_ref
from ledger.consent.models import ConsentVersion


def digest(key: bytes, fhir_version: str, kept: dict[str, Any]) -> str:
    """Keyed hash of a pseudonymised resource: the same content gives the same digest, and
    the digest says nothing without the key."""
    message = b"fhir-consent|" + fhir_version.encode() + b"|" + canonical(kept)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def identifier_digest(key: bytes, system: str, value: str) -> str:
    message = f"fhir-identifier|{system}|{value}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def address(consent_id: str, version: int) -> str:
    """What a sealed resource is bound to (AES-GCM associated data)."""
    return f"fhir-consent/{consent_id}/{version}"


def _instant(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def from_kept(
    kept: dict[str, Any], fhir_version: str, consent_id: str, row: ConsentVersion
) -> dict[str, Any]:
    """The kept resource as of consent version ``row``."""
    meta = {
        **(kept.get("meta") or {}),
        "versionId": str(row.version),
        "lastUpdated": timestamp(row.recorded_at),
    }
    out: dict[str, Any] = {"resourceType": "Consent", "id": consent_id, "meta": meta}
    out.update({k: v for k, v in kept.items() if k not in out})
    if row.status == "withdrawn":
        out["status"] = "inactive"
        if fhir_version == "R5" and row.withdrawn_at is not None:
            period = dict(out.get("period") or {})
            period.setdefault("start", _instant(row.valid_from))
            period["end"] = _instant(row.withdrawn_at)
            out["period"] = period
    return out


def _coding_list(row: ConsentVersion) -> list[dict[str, str]]:
    """The purposes and modifiers as codings: the ledger's own codes, except diseases, which
    are ``DUO:0000007`` once with each disease as a coding of its own system beside it
    (``fhir_diseases``), what DUO-aware systems read and import reads back the same."""
    codings: list[dict[str, str]] = []
    disease_codings: list[dict[str, str]] = []
    for p in row.purposes:
        base, _, disease = p.partition(":")
        coded = fhir_diseases.coding(disease) if base == "DS" and disease else None
        if coded is None:
            codings.append({"system": PURPOSE_SYSTEM, "code": p})
            continue
        if not disease_codings:
            codings.append(
                {
                    "system": DUO_SYSTEM,
                    "code": fhir_diseases.DUO_DS,
                    "display": fhir_diseases.DUO_DS_DISPLAY,
                }
            )
        disease_codings.append(coded)
    codings += disease_codings
    codings += [{"system": MODIFIER_SYSTEM, "code": m} for m in row.modifiers]
    return codings


def _provision(row: ConsentVersion, parent: ConsentVersion | None) -> dict[str, Any]:
    out: dict[str, Any] = {"purpose": _coding_list(row)}
    scope = row.scope or {}
    if scope.get("modalities"):
        out["code"] = [{"coding": [{"system": DCM_SYSTEM, "code": m}]} for m in scope["modalities"]]
    if scope.get("study_date_from") or scope.get("study_date_to"):
        out["dataPeriod"] = {
            k: v
            for k, v in (
                ("start", scope.get("study_date_from")),
                ("end", scope.get("study_date_to")),
            )
            if v
        }
    if parent is not None and (row.valid_from, row.valid_until) != (
        parent.valid_from,
        parent.valid_until,
    ):
        out["period"] = _period(row)
    return out


def _period(row: ConsentVersion) -> dict[str, str]:
    period = {"start": _instant(row.valid_from)}
    end = row.withdrawn_at or row.valid_until
    if end:
        period["end"] = _instant(end)
    return period


def generated(consent_id: str, rows: list[ConsentVersion], recorded: datetime) -> dict[str, Any]:
    """An R5 Consent for a consent (and the exceptions imported with it) that has no kept
    resource; ``recorded`` (when it was first recorded) is its date."""
    root, exceptions = rows[0], rows[1:]
    provision = _provision(root, None)
    nested = [_provision(r, root) for r in exceptions]
    if nested:
        provision["provision"] = nested
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": consent_id,
        "meta": {"versionId": str(root.version), "lastUpdated": timestamp(root.recorded_at)},
        "status": "active" if root.status == "active" else "inactive",
        "subject": subject_ref(root.subject_id),
        "date": recorded.date().isoformat(),
        "period": _period(root),
        "decision": root.decision,
        "provision": [provision],
    }
    ConsentR5.model_validate(resource)  # what we send must be valid R5
    return resource
