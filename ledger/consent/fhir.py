"""FHIR Consent in (R4/R4B and R5) and out (R5).

Resources are validated with ``fhir.resources`` first, then mapped element by element.
Anything in a provision we cannot honour (actors, actions, security labels, data
references, unknown codings...) is a 422 naming the element: importing a consent while
silently dropping a restriction would permit more than the patient agreed to.

Mapping (both versions):

* ``patient`` (R4) / ``subject`` (R5) identifier: ``system`` is the issuer, ``value`` the
  patient id (system ``urn:ledger:subject`` names an existing subject by its id);
* root decision: R5 ``decision``, R4 ``provision.type``; validity: ``period`` (R5) and/or
  the root provision's ``period``;
* provision ``purpose`` codings: ``urn:ledger:purpose`` codes, DUO codes
  (``http://purl.obolibrary.org/obo/duo``, purposes or modifiers), ``urn:ledger:modifier``;
* provision ``code`` codings from DICOM (``http://dicom.nema.org/resources/ontology/DCM``)
  limit the modalities; ``dataPeriod`` limits study dates;
* nested provisions become consents of their own: exceptions with the opposite decision
  (R5), or their own ``type`` (R4); they inherit purposes and limits they do not set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.consent import Consent as ConsentR5
from fhir.resources.R4B.consent import Consent as ConsentR4B
from pydantic import ValidationError

from ledger.consent.models import ConsentVersion
from ledger.consent.purposes import tree
from ledger.consent.schemas import Decision, Scope
from ledger.errors import InvalidInput
from ledger.limits import instant_problem

PURPOSE_SYSTEM = "urn:ledger:purpose"
MODIFIER_SYSTEM = "urn:ledger:modifier"
SUBJECT_SYSTEM = "urn:ledger:subject"
DUO_SYSTEM = "http://purl.obolibrary.org/obo/duo"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
PROVISION_KEYS = {"id", "type", "period", "purpose", "dataPeriod", "code", "provision"}


def _error(element: str, message: str) -> InvalidInput:
    return InvalidInput(f"{element}: {message}", errors=[{"element": element, "msg": message}])


@dataclass
class Part:
    decision: Decision
    purposes: list[str]
    modifiers: list[str]
    scope: Scope
    valid_from: datetime | None
    valid_until: datetime | None


@dataclass
class Mapped:
    fhir_version: str
    issuer: str | None
    patient_id: str | None
    subject_id: str | None
    parts: list[Part] = field(default_factory=list)


def detect_version(resource: dict[str, Any], declared: str | None) -> str:
    if declared:
        if declared.startswith("4"):
            return "R4"
        if declared.startswith("5"):
            return "R5"
        raise InvalidInput(f"fhirVersion {declared} is not supported; send R4 (4.0) or R5 (5.0)")
    r4_only = {"patient", "scope", "policyRule", "dateTime", "organization", "performer"}
    if isinstance(resource.get("provision"), dict) or r4_only & resource.keys():
        return "R4"
    return "R5"


def _validate(resource: dict[str, Any], version: str) -> None:
    if resource.get("resourceType") != "Consent":
        raise _error("resourceType", f"expected Consent, got {resource.get('resourceType')!r}")
    model = ConsentR4B if version == "R4" else ConsentR5
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__") or "Consent"
        raise _error(where, f"not a valid FHIR {version} Consent ({first.get('msg', '')})") from exc


def _instant(text: str | None, element: str, *, end: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            value = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if end:
                value = value.replace(hour=23, minute=59, second=59)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _error(element, f"cannot read {text!r} as a date or instant") from exc
    if value.tzinfo is None:
        raise _error(element, "an instant needs a time zone")
    problem = instant_problem(value)
    if problem:
        raise _error(element, f"{text!r} {problem}")
    return value


def _day(text: str | None, element: str) -> date | None:
    moment = _instant(text, element)
    return moment.date() if moment else None


def _purposes(codings: list[dict[str, Any]], element: str) -> tuple[list[str], list[str]]:
    t = tree()
    by_duo = {p.duo: p.code for p in t.purposes.values() if p.duo}
    modifiers_by_duo = {m["duo"]: code for code, m in t.modifiers.items()}
    purposes: list[str] = []
    modifiers: list[str] = []
    for i, coding in enumerate(codings):
        system, code = coding.get("system"), str(coding.get("code") or "")
        at = f"{element}[{i}]"
        if system == PURPOSE_SYSTEM:
            try:
                purposes.append(t.validate(code))
            except InvalidInput as exc:
                raise _error(at, exc.detail) from exc
        elif system == MODIFIER_SYSTEM and code in t.modifiers:
            modifiers.append(code)
        elif system == DUO_SYSTEM and code in by_duo and by_duo[code] != "DS":
            purposes.append(by_duo[code])
        elif system == DUO_SYSTEM and code in modifiers_by_duo:
            modifiers.append(modifiers_by_duo[code])
        else:
            raise _error(at, f"cannot map coding {system}|{code} to a purpose or modifier")
    return purposes, modifiers


def _modalities(concepts: list[dict[str, Any]], element: str) -> list[str]:
    out = []
    for i, concept in enumerate(concepts):
        for j, coding in enumerate(concept.get("coding") or []):
            if coding.get("system") != DCM_SYSTEM or not coding.get("code"):
                raise _error(
                    f"{element}[{i}].coding[{j}]",
                    "only DICOM modality codes (DCM) can limit a consent",
                )
            out.append(str(coding["code"]).upper())
    return out


def _walk(
    provision: dict[str, Any],
    element: str,
    decision: Decision,
    inherited: Part | None,
    version: str,
    out: list[Part],
    period: tuple[datetime | None, datetime | None],
) -> None:
    unknown = sorted(set(provision) - PROVISION_KEYS)
    if unknown:
        raise _error(
            f"{element}.{unknown[0]}", "this element cannot be honoured; nothing was imported"
        )
    purposes, modifiers = _purposes(provision.get("purpose") or [], f"{element}.purpose")
    modalities = _modalities(provision.get("code") or [], f"{element}.code")
    data_period = provision.get("dataPeriod") or {}
    own_period = provision.get("period") or {}
    base = inherited.scope if inherited else Scope()
    try:
        scope = Scope(
            modalities=modalities or base.modalities,
            body_parts=base.body_parts,
            study_date_from=_day(data_period.get("start"), f"{element}.dataPeriod.start")
            or base.study_date_from,
            study_date_to=_day(data_period.get("end"), f"{element}.dataPeriod.end")
            or base.study_date_to,
        )
    except ValidationError as exc:
        raise _error(f"{element}.dataPeriod", "end is before start") from exc
    valid_from = _instant(own_period.get("start"), f"{element}.period.start") or period[0]
    valid_until = _instant(own_period.get("end"), f"{element}.period.end", end=True) or period[1]
    if valid_from and valid_until and valid_until <= valid_from:
        raise _error(f"{element}.period", "end is not after start")
    part = Part(
        decision,
        purposes or (inherited.purposes if inherited else []),
        modifiers or (inherited.modifiers if inherited else []),
        scope,
        valid_from,
        valid_until,
    )
    if not part.purposes:
        raise _error(f"{element}.purpose", "a consent names at least one purpose")
    out.append(part)
    for i, child in enumerate(provision.get("provision") or []):
        at = f"{element}.provision[{i}]"
        if inherited is not None:
            raise _error(at, "exceptions to exceptions are not supported; split the consent")
        child_decision = _opposite(decision)
        if version == "R4" and child.get("type") not in (None, child_decision.value):
            raise _error(f"{at}.type", "a nested provision must reverse its parent's type")
        _walk(child, at, child_decision, part, version, out, (valid_from, valid_until))


def _opposite(decision: Decision) -> Decision:
    return Decision.deny if decision == Decision.permit else Decision.permit


def parse(resource: Any, declared_version: str | None = None) -> Mapped:
    """Validate and map a Consent resource; raises InvalidInput naming the element."""
    if not isinstance(resource, dict):
        raise _error("Consent", "the body must be a JSON object")
    version = detect_version(resource, declared_version)
    _validate(resource, version)
    if resource.get("status") != "active":
        raise _error(
            "status", f"only active consents can be imported, got {resource.get('status')!r}"
        )
    ref_key = "patient" if version == "R4" else "subject"
    identifier = (resource.get(ref_key) or {}).get("identifier") or {}
    system, value = identifier.get("system"), identifier.get("value")
    if not system or not value:
        raise _error(f"{ref_key}.identifier", "system and value are required to find the patient")
    mapped = Mapped(version, None, None, None)
    if system == SUBJECT_SYSTEM:
        mapped.subject_id = str(value)
    else:
        mapped.issuer, mapped.patient_id = str(system), str(value)
    top = resource.get("period") or {}
    period = (
        _instant(top.get("start"), "period.start"),
        _instant(top.get("end"), "period.end", end=True),
    )
    if version == "R4":
        root = resource.get("provision")
        if not isinstance(root, dict) or not root.get("type"):
            raise _error("provision.type", "the root provision must say permit or deny")
        _walk(root, "provision", Decision(root["type"]), None, version, mapped.parts, period)
        return mapped
    if resource.get("decision") not in ("permit", "deny"):
        raise _error("decision", "say permit or deny")
    provisions = resource.get("provision") or []
    if len(provisions) != 1:
        raise _error(
            "provision", "exactly one root provision (with nested exceptions) is supported"
        )
    _walk(
        provisions[0],
        "provision[0]",
        Decision(resource["decision"]),
        None,
        version,
        mapped.parts,
        period,
    )
    return mapped


def _coding_list(row: ConsentVersion) -> list[dict[str, str]]:
    codings = [{"system": PURPOSE_SYSTEM, "code": p} for p in row.purposes]
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
    period = {"start": row.valid_from.isoformat().replace("+00:00", "Z")}
    end = row.withdrawn_at or row.valid_until
    if end:
        period["end"] = end.isoformat().replace("+00:00", "Z")
    return period


def to_r5(consent_id: str, rows: list[ConsentVersion]) -> dict[str, Any]:
    """An R5 Consent for a consent (and the exceptions imported with it), current state."""
    root, exceptions = rows[0], rows[1:]
    provision = _provision(root, None)
    nested = [_provision(r, root) for r in exceptions]
    if nested:
        provision["provision"] = nested
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": consent_id,
        "meta": {"versionId": str(root.version)},
        "status": "active" if root.status == "active" else "inactive",
        "subject": {"identifier": {"system": SUBJECT_SYSTEM, "value": root.subject_id}},
        "date": root.recorded_at.date().isoformat(),
        "period": _period(root),
        "decision": root.decision,
        "provision": [provision],
    }
    ConsentR5.model_validate(resource)  # what we send must be valid R5
    return resource
