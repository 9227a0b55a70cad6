"""The FHIR server's operations on consents: create (also conditional and in a transaction
Bundle), read and vread, update, history and search, each one service call for its route.

Every change goes through ``consent.service`` (``record``, ``amend``, ``withdraw``), which
logs it in the same transaction; the resource is kept sealed beside it (``fhir_store``).
Re-sending what is already recorded (the same resource, or an exported one) changes
nothing and answers the consent as it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from ledger.canonical import canonical
from ledger.consent import fhir, fhir_bundle, fhir_export, fhir_store, service
from ledger.consent.fhir_patient import (
    Patient,
    Resolver,
    error,
    from_resource,
    patient_resource,
    pseudonymise,
)
from ledger.consent.fhir_store import Keys
from ledger.consent.models import ConsentVersion, FhirConsent, Subject
from ledger.consent.schemas import ConsentAmend, ConsentCreate, Source, WithdrawBody
from ledger.errors import Conflict, Gone, InvalidInput, LedgerError, NotFound

__all__ = ["Answer", "Keys", "PreconditionFailed"]


class PreconditionFailed(LedgerError):
    status, code, title = 412, "precondition-failed", "Precondition failed"


@dataclass(frozen=True)
class Answer:
    """A Consent and how it was reached: ``created`` (201) or found/updated (200)."""

    resource: dict[str, Any]
    created: bool = False

    @property
    def version(self) -> str:
        return str(self.resource["meta"]["versionId"])

    @property
    def location(self) -> str:
        return f"Consent/{self.resource['id']}/_history/{self.version}"


# -- reading ----------------------------------------------------------------------------


def alive(session: Session, subject_id: str) -> None:
    subject = session.get(Subject, subject_id)
    if subject is None or subject.erased_at is not None:
        raise Gone("this consent's subject was erased; the consent can no longer be read")


def view(
    session: Session, keys: Keys, consent_id: str, version: int | None = None
) -> tuple[dict[str, Any], tuple[datetime | None, datetime | None]]:
    """The Consent at ``version`` (default: now) and its date range."""
    rows = service.history(session, consent_id)
    alive(session, rows[0].subject_id)
    at = rows[-1] if version is None else next((r for r in rows if r.version == version), None)
    if at is None:
        raise NotFound(f"consent {consent_id} has no version {version}")
    content = next(r for r in reversed(rows) if r.version <= at.version and r.event != "withdrawn")
    stored = session.get(FhirConsent, consent_id)
    if stored is not None:
        found = fhir_store.kept(session, keys, consent_id, at.subject_id, content.version)
        if found is not None:
            resource = fhir_export.from_kept(found.resource, found.fhir_version, consent_id, at)
            return resource, found.date
    parts = stored.parts[1:] if stored is not None else []
    others = [service.current(session, p) for p in parts]
    first = rows[0].recorded_at
    day = datetime(first.year, first.month, first.day, tzinfo=first.tzinfo)
    resource = fhir_export.generated(consent_id, [at, *others], first)
    return resource, (day, day + timedelta(days=1))


def read(session: Session, keys: Keys, consent_id: str, version: int | None = None) -> Answer:
    """``GET Consent/{id}`` and ``GET Consent/{id}/_history/{version}``."""
    return Answer(view(session, keys, consent_id, version)[0])


def history(session: Session, keys: Keys, consent_id: str, base: str) -> dict[str, Any]:
    """``GET Consent/{id}/_history``: every version, newest first."""
    rows = service.history(session, consent_id)
    versions = [(view(session, keys, consent_id, r.version)[0], r.version == 1) for r in rows]
    return fhir_bundle.history(base, versions[::-1])


def patient(session: Session, subject_id: str) -> dict[str, Any]:
    """``GET Patient/{id}``: the pseudonymous subject, with its coarse demographics."""
    subject = session.get(Subject, subject_id)
    if subject is None:
        raise NotFound(f"no subject {subject_id}")
    if subject.erased_at is not None:
        raise Gone("this subject was erased")
    return patient_resource(subject.id, subject.sex, subject.birth_year)


# -- writing ----------------------------------------------------------------------------


def _subject(session: Session, keys: Keys, who: Patient, actor: str | None) -> str:
    if who.subject_id is not None:
        return service.get_subject(session, who.subject_id).id
    assert who.subject is not None
    return service.create_subject(session, keys.pseudonym_key, who.subject, actor=actor).id


def _condition(session: Session, keys: Keys, header: str) -> str | None:
    """``If-None-Exist: identifier=<system>|<value>``: the consent it names, if any."""
    name, _, value = header.strip().partition("=")
    system, bar, code = value.partition("|")
    if name.strip() != "identifier" or not bar or not system or not code or "&" in value:
        raise error("If-None-Exist", "only identifier=<system>|<value> is supported as a condition")
    return fhir_store.by_identifier(session, keys.pseudonym_key, system, code)


def _current_content(session: Session, consent_id: str) -> ConsentVersion:
    rows = service.history(session, consent_id)
    return next(r for r in reversed(rows) if r.event != "withdrawn")


def _unchanged(session: Session, subject_id: str, digest: str) -> str | None:
    """An active consent whose current content is exactly this resource."""
    for consent_id, version in fhir_store.by_digest(session, subject_id, digest):
        root = service.current(session, consent_id)
        if root.status == "active" and _current_content(session, consent_id).version == version:
            return consent_id
    return None


def _content(part: fhir.Part, evidence: str) -> dict[str, Any]:
    return {
        "decision": part.decision,
        "purposes": part.purposes,
        "modifiers": part.modifiers,
        "scope": part.scope,
        "valid_from": part.valid_from,
        "valid_until": part.valid_until,
        "evidence_sha256": evidence,
    }


def create(
    session: Session,
    keys: Keys,
    resource: Any,
    declared_version: str | None,
    *,
    actor: str | None,
    if_none_exist: str | None = None,
    resolve: Resolver | None = None,
) -> Answer:
    """``POST Consent``: one consent per provision, all or nothing; an existing match
    (``If-None-Exist``, or the same content for the same patient) is answered instead."""
    if if_none_exist:
        existing = _condition(session, keys, if_none_exist)
        if existing is not None:
            return read(session, keys, existing)
    mapped = fhir.parse(resource, declared_version, resolve)
    subject_id = _subject(session, keys, mapped.patient, actor)
    kept = pseudonymise(resource, mapped.patient_key, mapped.patient, subject_id)
    digest = fhir_export.digest(keys.pseudonym_key, mapped.fhir_version, kept)
    same = _unchanged(session, subject_id, digest)
    if same is not None:
        return read(session, keys, same)
    for i, (system, value) in enumerate(mapped.identifiers):
        other = fhir_store.by_identifier(session, keys.pseudonym_key, system, value)
        if other is not None:
            raise Conflict(
                f"identifier[{i}] already names Consent/{other}; change it with "
                f"PUT /v1/fhir/Consent/{other}, or send If-None-Exist to create it only once"
            )
    evidence = hashlib.sha256(canonical(kept)).hexdigest()
    rows = [
        service.record(
            session,
            ConsentCreate(subject_id=subject_id, **_content(part, evidence)),
            actor=actor,
            source=Source.fhir,
        )
        for part in mapped.parts
    ]
    consent_id = rows[0].consent_id
    fhir_store.keep(
        session,
        keys,
        consent_id=consent_id,
        subject_id=subject_id,
        version=rows[0].version,
        parts=[r.consent_id for r in rows],
        fhir_version=mapped.fhir_version,
        resource=kept,
        digest=digest,
        date=mapped.date,
        identifiers=mapped.identifiers,
    )
    return Answer(read(session, keys, consent_id).resource, created=True)


def _version_of(if_match: str) -> int:
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise error("If-Match", 'send the version as an ETag, e.g. W/"2"')
    return int(text)


def update(
    session: Session,
    keys: Keys,
    consent_id: str,
    resource: Any,
    declared_version: str | None,
    *,
    actor: str | None,
    if_match: str | None = None,
) -> Answer:
    """``PUT Consent/{id}``: a new version of every part through the amend path (status
    ``inactive`` withdraws it); the same content again changes nothing."""
    root = service.current(session, consent_id)
    alive(session, root.subject_id)
    if if_match is not None and _version_of(if_match) != root.version:
        raise PreconditionFailed(
            f"the consent is at version {root.version}, not {if_match}; read it again"
        )
    if not isinstance(resource, dict) or resource.get("id") != consent_id:
        raise error("id", f"the resource's id must be {consent_id}, the id in the URL")
    body = {k: v for k, v in resource.items() if k != "id"}
    mapped = fhir.parse(body, declared_version, statuses=("active", "inactive"))
    subject_id = _subject(session, keys, mapped.patient, actor)
    if subject_id != root.subject_id:
        raise error(mapped.patient_key, "names another patient; a consent stays with its patient")
    stored = session.get(FhirConsent, consent_id)
    parts = stored.parts if stored is not None else [consent_id]
    if mapped.status == "inactive":
        for part_id in parts:
            if service.current(session, part_id).status == "active":
                reason = "withdrawn through FHIR (status inactive)"
                service.withdraw(session, part_id, WithdrawBody(reason=reason), actor=actor)
        return read(session, keys, consent_id)
    if root.status == "withdrawn":
        raise Conflict("this consent was withdrawn; create a new consent instead")
    kept = pseudonymise(body, mapped.patient_key, mapped.patient, subject_id)
    digest = fhir_export.digest(keys.pseudonym_key, mapped.fhir_version, kept)
    if _unchanged(session, subject_id, digest) == consent_id:
        return read(session, keys, consent_id)
    if len(mapped.parts) != len(parts):
        raise error(
            "provision",
            f"the update has {len(mapped.parts)} provisions where the consent has "
            f"{len(parts)}; withdraw it (status inactive) and create a new consent",
        )
    evidence = hashlib.sha256(canonical(kept)).hexdigest()
    rows = [
        service.amend(
            session,
            part_id,
            ConsentAmend(**_content(part, evidence), reason="updated through FHIR (PUT)"),
            actor=actor,
            source=Source.fhir,
        )
        for part_id, part in zip(parts, mapped.parts, strict=True)
    ]
    fhir_store.keep(
        session,
        keys,
        consent_id=consent_id,
        subject_id=subject_id,
        version=rows[0].version,
        parts=parts,
        fhir_version=mapped.fhir_version,
        resource=kept,
        digest=digest,
        date=mapped.date,
        identifiers=mapped.identifiers,
    )
    return read(session, keys, consent_id)


def _prefixed(exc: LedgerError, at: str) -> LedgerError:
    """An error about one entry of a Bundle, naming the entry."""
    errors = exc.extra.get("errors")
    if isinstance(errors, list):
        exc.extra["errors"] = [
            {**e, "element": f"{at}.{e['element']}"}
            if isinstance(e, dict) and "element" in e
            else e
            for e in errors
        ]
    exc.detail = f"{at}.{exc.detail}" if isinstance(exc, InvalidInput) else f"{at}: {exc.detail}"
    exc.args = (exc.detail,)
    return exc


def transaction(
    session: Session,
    keys: Keys,
    bundle: Any,
    declared_version: str | None,
    *,
    actor: str | None,
    base: str,
) -> dict[str, Any]:
    """``POST /`` with a transaction Bundle of Patients and Consents, all or nothing."""
    items = fhir_bundle.entries(bundle)
    resolve = fhir_bundle.resolver(items)
    answers: list[dict[str, Any]] = [{} for _ in items]
    for entry in (e for e in items if e.kind == "Patient"):
        try:
            subject = from_resource(entry.resource, "resource")
            out = service.create_subject(session, keys.pseudonym_key, subject, actor=actor)
        except LedgerError as exc:
            raise _prefixed(exc, entry.at) from exc
        answers[entry.index] = {
            "response": {
                "status": "201 Created" if out.created else "200 OK",
                "location": f"Patient/{out.id}",
            }
        }
    for entry in (e for e in items if e.kind == "Consent"):
        try:
            answer = create(
                session,
                keys,
                entry.resource,
                declared_version,
                actor=actor,
                if_none_exist=entry.if_none_exist,
                resolve=resolve,
            )
        except LedgerError as exc:
            raise _prefixed(exc, f"{entry.at}.resource") from exc
        answers[entry.index] = {
            "fullUrl": f"{base}/Consent/{answer.resource['id']}",
            "resource": answer.resource,
            "response": {
                "status": "201 Created" if answer.created else "200 OK",
                "location": answer.location,
                "etag": f'W/"{answer.version}"',
                "lastModified": answer.resource["meta"]["lastUpdated"],
            },
        }
    return fhir_bundle.transaction_response(answers)
