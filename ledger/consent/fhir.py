"""FHIR Consent in (R4/R4B and R5): validation and mapping onto the ledger's consents.

Resources are validated with ``fhir.resources`` first, then mapped element by element
(``fhir_elements`` says what happens to each). Anything the ledger cannot honour
(grantee, actors, actions, security labels, data references, unknown codings...) is a 422
naming the element: importing a consent while silently dropping a restriction would
permit more than the patient agreed to.

Mapping (both versions):

* the patient (R4 ``patient``, R5 ``subject``): ``fhir_patient``;
* root decision: R5 ``decision``, R4 the root ``provision.type``; R4 ``policyRule`` and R5
  ``regulatoryBasis`` v3-ActCode OPTIN/OPTOUT say the same (a contradiction is a 422);
  validity: ``period`` (R5) and/or the root provision's ``period``;
* provision ``purpose`` codings: ``urn:ledger:purpose`` codes, DUO codes
  (``http://purl.obolibrary.org/obo/duo``, purposes or modifiers), ``urn:ledger:modifier``;
  a consent naming no purpose the ledger knows is a 422 listing what it found;
  ``DUO:0000007`` (disease-specific research) with the disease as another coding in the same
  list (ICD-10-CM, MONDO or DOID: ``fhir_diseases``) is ``DS:<SYSTEM>:<code>``, one per
  disease coding; an unknown disease system, or either coding without the other, is a 422;
* provision ``code`` codings from DICOM (``http://dicom.nema.org/resources/ontology/DCM``)
  limit the modalities; ``dataPeriod`` limits study dates;
* nested provisions become consents of their own: exceptions with the opposite decision
  (R5), or their own ``type`` (R4); they inherit purposes and limits they do not set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fhir.resources.consent import Consent as ConsentR5
from fhir.resources.R4B.consent import Consent as ConsentR4B
from pydantic import ValidationError

from ledger.consent import fhir_diseases
from ledger.consent import fhir_elements as elements
from ledger.consent.fhir_checks import (
    ACCEPTED_PURPOSES,
    DCM_SYSTEM,
    DUO_SYSTEM,
    DUO_SYSTEMS,
    MODIFIER_SYSTEM,
    PURPOSE_SYSTEM,
    audit,
    decision_of,
    modifier_extensions,
    provisions_of,
    purpose_problems,
)
from ledger.consent.fhir_diseases import DUO_DS
from ledger.consent.fhir_patient import Patient, Resolver, identify
from ledger.consent.purposes import tree
from ledger.consent.schemas import Decision, Scope
from ledger.errors import InvalidInput
from ledger.limits import instant_problem


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
    patient: Patient
    status: str
    parts: list[Part] = field(default_factory=list)
    identifiers: list[tuple[str, str]] = field(default_factory=list)  # (system, value)
    date: tuple[datetime | None, datetime | None] = (None, None)  # dateTime / date, as a range

    @property
    def patient_key(self) -> str:
        return "patient" if self.fhir_version == "R4" else "subject"


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
    ds_at = next(
        (i for i, c in enumerate(codings) if c.get("system") in DUO_SYSTEMS and _ds(c)), None
    )
    for i, coding in enumerate(codings):
        system, code = coding.get("system"), str(coding.get("code") or "")
        at = f"{element}[{i}]"
        if system == PURPOSE_SYSTEM:
            try:
                purposes.append(t.validate(code))
            except InvalidInput as exc:
                raise _error(at, exc.detail) from exc
        elif system == MODIFIER_SYSTEM and code.partition(":")[0] in t.modifiers:
            modifiers.append(_modifier(code, at))
        elif system in DUO_SYSTEMS and _ds(coding):
            continue
        elif system in DUO_SYSTEMS and code in by_duo:
            purposes.append(by_duo[code])
        elif system in DUO_SYSTEMS and code in modifiers_by_duo:
            modifiers.append(_modifier(modifiers_by_duo[code], at))
        elif ds_at is not None and system not in DUO_SYSTEMS:
            # Beside DUO:0000007 every other coding is the disease it is limited to.
            try:
                purposes.append(t.validate(f"DS:{fhir_diseases.qualifier(coding)}"))
            except InvalidInput as exc:
                raise _error(at, exc.detail) from exc
        elif fhir_diseases.is_disease_coding(coding):
            raise _error(
                at,
                f"a disease coding limits research only beside {DUO_DS} (disease-specific "
                f"research) in the same purpose list; add {DUO_SYSTEM}|{DUO_DS}",
            )
        else:
            raise _error(
                at,
                f"cannot map coding {system}|{code} to a purpose or modifier; accepted code "
                f"systems: {ACCEPTED_PURPOSES}",
            )
    if ds_at is not None and not any(p.startswith("DS:") for p in purposes):
        raise _error(
            f"{element}[{ds_at}]",
            f"{DUO_DS} (disease-specific research) needs the disease: add its coding to the "
            f"same purpose list, from {fhir_diseases.KNOWN}",
        )
    return purposes, modifiers


def _modifier(code: str, at: str) -> str:
    """A modifier as the ledger stores it (``CODE`` or, where it carries a value,
    ``CODE:VALUE``); one it cannot read is a 422 naming the coding."""
    try:
        return tree().validate_modifiers([code])[0]
    except InvalidInput as exc:
        raise _error(at, exc.detail) from exc


def _ds(coding: dict[str, Any]) -> bool:
    return str(coding.get("code") or "") == DUO_DS


def _modalities(concepts: list[dict[str, Any]], element: str) -> list[str]:
    out = []
    for i, concept in enumerate(concepts):
        for j, coding in enumerate(concept.get("coding") or []):
            if fhir_diseases.is_disease_coding(coding):
                raise _error(
                    f"{element}[{i}].coding[{j}]",
                    f"a disease limits research as a purpose: put its coding in purpose, "
                    f"beside {DUO_SYSTEM}|{DUO_DS} (disease-specific research)",
                )
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


def date_range(text: str | None, element: str) -> tuple[datetime | None, datetime | None]:
    """A FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or an instant) as [start, end)."""
    if not text:
        return None, None
    try:
        if len(text) == 4:
            year = int(text)
            return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
        if len(text) == 7:
            year, month = int(text[:4]), int(text[5:])
            return (
                datetime(year, month, 1, tzinfo=UTC),
                datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC),
            )
    except ValueError as exc:
        raise _error(element, f"cannot read {text!r} as a date") from exc
    moment = _instant(text, element)
    assert moment is not None
    return moment, moment + (timedelta(days=1) if len(text) == 10 else timedelta(seconds=1))


def _identifiers(resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (str(i["system"]), str(i["value"]))
        for i in resource.get("identifier") or []
        if isinstance(i, dict) and i.get("system") and i.get("value")
    ]


def _raise(problems: list[dict[str, Any]]) -> None:
    if not problems:
        return
    first = problems[0]
    more = f" (and {len(problems) - 1} more: see errors)" if len(problems) > 1 else ""
    raise InvalidInput(
        f"{first['element']}: {first['msg']}{more}; nothing was imported", errors=problems
    )


def parse(
    resource: Any,
    declared_version: str | None = None,
    resolve: Resolver | None = None,
    *,
    statuses: tuple[str, ...] = ("active",),
) -> Mapped:
    """Validate and map a Consent resource; raises InvalidInput naming every element it
    cannot honour (``errors``), the first one in ``detail``."""
    if not isinstance(resource, dict):
        raise _error("Consent", "the body must be a JSON object")
    version = detect_version(resource, declared_version)
    _validate(resource, version)
    problems: list[dict[str, Any]] = []
    audit(resource, elements.ROOT[version], "", problems)
    provisions = provisions_of(resource, version)
    for at, node in provisions:
        audit(node, elements.PROVISION[version], f"{at}.", problems)
        try:
            _modalities(node.get("code") or [], f"{at}.code")
        except InvalidInput as exc:
            problems += exc.extra["errors"]
    modifier_extensions(resource, "", problems)
    status = resource.get("status")
    if status not in statuses:
        problems.append(
            {
                "element": "status",
                "msg": f"{status!r} cannot be recorded here; send "
                + " or ".join(repr(s) for s in statuses),
            }
        )
    key = "patient" if version == "R4" else "subject"
    patient, found = identify(resource, key, resolve)
    problems += found
    decision = decision_of(resource, version, problems)
    purpose_problems(provisions, version, problems)
    if version == "R5" and len(resource.get("provision") or []) > 1:
        problems.append(
            {
                "element": "provision",
                "msg": "exactly one root provision (with nested exceptions) is supported",
            }
        )
    _raise(problems)
    assert decision is not None
    mapped = Mapped(version, patient, str(status), identifiers=_identifiers(resource))
    date_key = "dateTime" if version == "R4" else "date"
    mapped.date = date_range(resource.get(date_key), date_key)
    top = resource.get("period") or {}
    period = (
        _instant(top.get("start"), "period.start"),
        _instant(top.get("end"), "period.end", end=True),
    )
    root_at, root = provisions[0]
    _walk(root, root_at, decision, None, version, mapped.parts, period)
    return mapped
