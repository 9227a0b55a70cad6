"""HTTP routes for subjects, consents, purposes and FHIR Consent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ledger.consent import csv_import, service, subjects
from ledger.consent.purposes import tree
from ledger.consent.schemas import (
    ConsentAmend,
    ConsentCreate,
    ConsentPublic,
    ConsentState,
    ImportReport,
    Permission,
    SubjectCreate,
    SubjectLookup,
    SubjectPublic,
    WithdrawBody,
)
from ledger.errors import NotFound, UnsupportedMediaType
from ledger.fields import Instant
from ledger.http.deps import SessionDep, StateDep
from ledger.http.idempotency import run_once
from ledger.http.security import Registrar, RegistrarOrOversight

router = APIRouter(tags=["consent"])

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Retry-safe key; a repeat replays the answer."),
]
AsOf = Annotated[
    Instant | None,
    Query(description="Instant (with zone) to answer for; default now. Past answers never change."),
]


@router.get("/v1/purposes", tags=["consent"])
def purposes() -> dict[str, Any]:
    """The purpose tree and modifiers (versioned); unknown codes are refused everywhere."""
    return tree().as_dict()


@router.post("/v1/subjects", response_model=SubjectPublic, status_code=201)
def create_subject(
    body: SubjectCreate,
    response: Response,
    session: SessionDep,
    state: StateDep,
    caller: Registrar,
) -> SubjectPublic:
    """Register a patient by pseudonym; the same patient always gets the same subject
    (200 when it already existed)."""
    made = service.create_subject(session, state.keys.pseudonym_key, body, actor=caller.id)
    if not made.created:
        response.status_code = 200
    return made


@router.post("/v1/subjects/lookup", response_model=SubjectPublic)
def lookup_subject(
    body: SubjectLookup, session: SessionDep, state: StateDep, caller: Registrar
) -> SubjectPublic:
    """Find a patient's subject by issuer and patient id (POST, so the id never appears
    in URLs or access logs)."""
    found = subjects.find(session, state.keys.pseudonym_key, body.issuer, body.patient_id)
    if found is None or found.erased_at is not None:
        raise NotFound("no subject for this patient")
    return service.subject_public(found)


@router.get("/v1/subjects/{subject_id}", response_model=SubjectPublic)
def get_subject(
    subject_id: str, session: SessionDep, caller: RegistrarOrOversight
) -> SubjectPublic:
    return service.subject_public(service.get_subject(session, subject_id))


@router.get("/v1/subjects/{subject_id}/consents", response_model=ConsentState)
def subject_consents(
    subject_id: str, session: SessionDep, caller: RegistrarOrOversight, as_of: AsOf = None
) -> ConsentState:
    """Consents in force at ``as_of``, as they were known at ``as_of``."""
    return service.state(session, subject_id, as_of)


@router.get("/v1/subjects/{subject_id}/consents/history", response_model=list[ConsentPublic])
def subject_history(
    subject_id: str, session: SessionDep, caller: RegistrarOrOversight
) -> list[ConsentPublic]:
    """Every version of every consent of the subject, in the order they were recorded."""
    return [service.public(r) for r in service.subject_consents(session, subject_id)]


@router.get("/v1/subjects/{subject_id}/permissions", response_model=Permission)
def permissions(
    subject_id: str,
    session: SessionDep,
    caller: RegistrarOrOversight,
    purpose: Annotated[str, Query(description="e.g. ai.training or ai.training,DS:C34")],
    as_of: AsOf = None,
) -> Permission:
    """Whether the subject's consents permit one purpose at ``as_of``, with reasons."""
    return service.permission(session, subject_id, purpose, as_of)


@router.post("/v1/consents", response_model=ConsentPublic, status_code=201)
def create_consent(
    body: ConsentCreate,
    session: SessionDep,
    caller: Registrar,
    idempotency_key: IdempotencyKey = None,
) -> ConsentPublic:
    """Record a permit or a refusal for purposes, with scope and validity."""
    return run_once(
        session,
        principal_id=caller.id,
        key=idempotency_key,
        route="POST /v1/consents",
        payload=body.model_dump(mode="json"),
        model=ConsentPublic,
        action=lambda: service.public(service.record(session, body, actor=caller.id)),
    )


@router.get("/v1/consents/{consent_id}", response_model=ConsentPublic)
def get_consent(
    consent_id: str, session: SessionDep, caller: RegistrarOrOversight
) -> ConsentPublic:
    """The consent's newest version."""
    return service.public(service.current(session, consent_id))


@router.get("/v1/consents/{consent_id}/history", response_model=list[ConsentPublic])
def consent_history(
    consent_id: str, session: SessionDep, caller: RegistrarOrOversight
) -> list[ConsentPublic]:
    return [service.public(r) for r in service.history(session, consent_id)]


@router.post("/v1/consents/{consent_id}/amend", response_model=ConsentPublic)
def amend_consent(
    consent_id: str, body: ConsentAmend, session: SessionDep, caller: Registrar
) -> ConsentPublic:
    """Correct a consent; the previous version stays in history and in past answers."""
    return service.public(service.amend(session, consent_id, body, actor=caller.id))


@router.post("/v1/consents/{consent_id}/withdraw", response_model=ConsentPublic)
def withdraw_consent(
    consent_id: str,
    session: SessionDep,
    caller: Registrar,
    body: WithdrawBody | None = None,
    subject_id: Annotated[
        str | None, Query(description="Refuse unless the consent belongs to this subject.")
    ] = None,
) -> ConsentPublic:
    """Withdraw, effective immediately: the next decision and release already see it."""
    row = service.withdraw(
        session, consent_id, body or WithdrawBody(), actor=caller.id, subject_id=subject_id
    )
    return service.public(row)


@router.post(
    "/v1/consents/import",
    response_model=ImportReport,
    status_code=201,
    openapi_extra={
        "requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}
    },
)
async def import_consents(
    request: Request, session: SessionDep, state: StateDep, caller: Registrar
) -> ImportReport:
    """Bulk import from CSV (see the README for the columns): every row or none; a 422
    lists the bad lines."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("text/csv", "application/csv"):
        raise UnsupportedMediaType("send the file as text/csv")
    data = await request.body()

    def work() -> ImportReport:
        parsed = csv_import.parse(csv_import.decode(data))
        return csv_import.import_rows(session, state.keys.pseudonym_key, parsed, actor=caller.id)

    return await run_in_threadpool(work)
