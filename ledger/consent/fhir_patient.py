"""Who a FHIR Consent is about, and how that identity is replaced before anything is kept.

A Consent names its patient by identifier, by a contained Patient (``#id``) or by a
Patient elsewhere in the same transaction Bundle (``urn:uuid:...`` or ``Patient/x``). Of
a Patient the ledger reads only the identifier (system → issuer, value → patient id, as
every other door does), ``gender`` and the year of ``birthDate``; nothing else is kept.
Before a resource is sealed or answered, every reference to the patient becomes the
pseudonymous subject reference (``subject_ref``), and the narrative and contained
Patients are left out.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.patient import Patient as PatientR5
from fhir.resources.R4B.patient import Patient as PatientR4B
from pydantic import ValidationError

from ledger.consent.schemas import SubjectCreate
from ledger.errors import InvalidInput

SUBJECT_SYSTEM = "urn:ledger:subject"
MR_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
GENDER = {v: k for k, v in SEX.items()}

# A reference string (``urn:uuid:...``, ``Patient/x``, an absolute URL) → the Patient, and
# every reference string that names it in the Bundle.
Resolver = Callable[[str], tuple[dict[str, Any], set[str]] | None]


def error(element: str, message: str) -> InvalidInput:
    return InvalidInput(f"{element}: {message}", errors=[{"element": element, "msg": message}])


def subject_ref(subject_id: str) -> dict[str, Any]:
    """How the ledger names a subject in FHIR: a Patient reference it can answer
    (``GET /v1/fhir/Patient/{id}``) and the same id as an identifier."""
    return {
        "reference": f"Patient/{subject_id}",
        "identifier": {"system": SUBJECT_SYSTEM, "value": subject_id},
    }


@dataclass
class Patient:
    """The patient a Consent names: an existing subject, or issuer and patient id."""

    subject_id: str | None = None
    subject: SubjectCreate | None = None
    refs: set[str] = field(default_factory=set)  # reference strings that denote it


def from_resource(resource: Mapping[str, Any], where: str) -> SubjectCreate:
    """A Patient resource → the subject's key and coarse demographics; nothing else."""
    if resource.get("resourceType") != "Patient":
        raise error(where, f"expected a Patient, got {resource.get('resourceType')!r}")
    problems = []
    for model in (PatientR5, PatientR4B):
        try:
            model.model_validate(resource)
            break
        except ValidationError as exc:
            problems.append(exc.errors()[0].get("msg", ""))
    else:
        raise error(where, f"not a valid FHIR Patient ({problems[0]})")
    usable = [
        (i, ident)
        for i, ident in enumerate(resource.get("identifier") or [])
        if ident.get("system") and ident.get("value") and ident.get("use") != "old"
    ]
    if not usable:
        raise error(
            f"{where}.identifier",
            "a Patient needs an identifier with system and value: the ledger knows "
            "patients only by them",
        )
    medical_record = [
        (i, ident)
        for i, ident in usable
        if any(
            c.get("code") == "MR" and c.get("system") in (None, MR_SYSTEM)
            for c in (ident.get("type") or {}).get("coding") or []
        )
    ]
    index, chosen = (medical_record or usable)[0]
    birth = str(resource.get("birthDate") or "")
    try:
        return SubjectCreate(
            issuer=str(chosen["system"]),
            patient_id=str(chosen["value"]),
            sex=SEX.get(str(resource.get("gender") or "")),
            birth_year=int(birth[:4]) if birth[:4].isdigit() else None,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        name = {"issuer": "system", "patient_id": "value"}.get(str(first["loc"][0]))
        at = f"{where}.identifier[{index}].{name}" if name else f"{where}.birthDate"
        raise error(at, str(first.get("msg", "not accepted"))) from exc


def identify(
    consent: Mapping[str, Any], key: str, resolve: Resolver | None
) -> tuple[Patient, list[dict[str, Any]]]:
    """The patient of ``consent`` (its ``patient`` or ``subject`` element ``key``), and any
    error found; errors name the element."""
    ref = consent.get(key)
    if not isinstance(ref, dict) or not ref:
        return Patient(), [{"element": key, "msg": "name the patient the consent is about"}]
    reference = ref.get("reference")
    patient = Patient(refs={reference} if reference else set())
    if isinstance(reference, str) and reference:
        kind = reference.removeprefix("#").split("/")[-2:-1]
        if kind and kind[0] != "Patient":
            return patient, [
                {"element": f"{key}.reference", "msg": "only a Patient can give consent here"}
            ]
        found = _contained(consent, reference) if reference.startswith("#") else None
        if found is None and not reference.startswith("#") and resolve is not None:
            resolved = resolve(reference)
            if resolved is not None:
                found, aliases = resolved
                patient.refs |= aliases
        if found is not None:
            where = "contained" if reference.startswith("#") else reference
            try:
                patient.subject = from_resource(found, where)
            except InvalidInput as exc:
                return patient, list(
                    exc.extra.get("errors") or [{"element": where, "msg": exc.detail}]
                )
            return patient, []
    identifier = ref.get("identifier") or {}
    system, value = identifier.get("system"), identifier.get("value")
    if system and value:
        if system == SUBJECT_SYSTEM:
            patient.subject_id = str(value)
            patient.refs.add(f"Patient/{value}")
            return patient, []
        try:
            patient.subject = SubjectCreate(issuer=str(system), patient_id=str(value))
        except ValidationError as exc:
            msg = str(exc.errors()[0].get("msg", "not accepted"))
            return patient, [{"element": f"{key}.identifier", "msg": msg}]
        return patient, []
    if reference:
        return patient, [
            {
                "element": f"{key}.reference",
                "msg": f"{reference} cannot be resolved: send the Patient with an identifier "
                "in a transaction Bundle (POST /v1/fhir) or contained in the Consent, or name "
                "the patient by identifier (system and value)",
            }
        ]
    return patient, [
        {"element": f"{key}.identifier", "msg": "system and value are required to find the patient"}
    ]


def _contained(consent: Mapping[str, Any], reference: str) -> dict[str, Any] | None:
    for item in consent.get("contained") or []:
        if isinstance(item, dict) and f"#{item.get('id')}" == reference:
            return item
    return None


def pseudonymise(
    consent: Mapping[str, Any], key: str, patient: Patient, subject_id: str
) -> dict[str, Any]:
    """The consent as the ledger keeps and answers it: the patient element and every
    reference to the patient become the subject reference; the narrative, contained
    Patients, the sender's id and the server's meta fields are left out."""
    out = copy.deepcopy(dict(consent))
    out.pop("text", None)
    out.pop("id", None)
    refs = set(patient.refs) | {f"Patient/{subject_id}"}
    idents = {(SUBJECT_SYSTEM, subject_id)}
    if patient.subject is not None:
        idents.add((patient.subject.issuer, patient.subject.patient_id))
    contained = [c for c in out.get("contained") or [] if c.get("resourceType") != "Patient"]
    refs |= {
        f"#{c.get('id')}" for c in out.get("contained") or [] if c.get("resourceType") == "Patient"
    }
    if contained:
        out["contained"] = contained
    else:
        out.pop("contained", None)
    meta = {
        k: v for k, v in (out.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")
    }
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    replaced = _replace(out, refs, idents, subject_ref(subject_id))
    replaced[key] = subject_ref(subject_id)
    result: dict[str, Any] = replaced
    return result


def _replace(
    node: Any, refs: set[str], idents: set[tuple[str, str]], with_ref: dict[str, Any]
) -> Any:
    """Every Reference to the patient (by reference string or by identifier) → ``with_ref``."""
    if isinstance(node, dict):
        reference = node.get("reference")
        ident = node.get("identifier")
        if isinstance(reference, str) and reference in refs:
            return copy.deepcopy(with_ref)
        if (
            (reference is None or reference in refs)
            and isinstance(ident, dict)
            and (ident.get("system"), ident.get("value")) in idents
        ):
            return copy.deepcopy(with_ref)
        return {k: _replace(v, refs, idents, with_ref) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, refs, idents, with_ref) for v in node]
    return node


def patient_resource(subject_id: str, sex: str | None, birth_year: int | None) -> dict[str, Any]:
    """The pseudonymous Patient the ledger answers for a subject."""
    out: dict[str, Any] = {
        "resourceType": "Patient",
        "id": subject_id,
        "identifier": [{"system": SUBJECT_SYSTEM, "value": subject_id}],
    }
    if sex in GENDER:
        out["gender"] = GENDER[sex]
    if birth_year:
        out["birthDate"] = f"{birth_year:04d}"
    return out
