"""FHIR routes: a small FHIR server for consents, as hospitals' consent systems exchange
them. Each route parses the request and calls one function of ``consent.fhir_service``;
errors are answered as OperationOutcome to clients that accept FHIR JSON."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger import __version__
from ledger.consent import fhir_search, fhir_service
from ledger.consent.fhir import detect_version
from ledger.consent.fhir_service import Keys
from ledger.errors import InvalidJson, LedgerError, UnsupportedMediaType
from ledger.http.deps import SessionDep, StateDep
from ledger.http.problems import render_errors_under
from ledger.http.security import Registrar, RegistrarOrOversight
from ledger.images.subject_seal import SubjectSealer

FHIR_JSON = "application/fhir+json"


class FhirJSONResponse(JSONResponse):
    """What FHIR routes answer, so the OpenAPI document names it (the routes set it)."""

    media_type = FHIR_JSON


router = APIRouter(tags=["fhir"], default_response_class=FhirJSONResponse)
BASE = "/v1/fhir"
_BODY = {
    "requestBody": {
        "content": {FHIR_JSON: {"schema": {"type": "object"}}, "application/json": {}},
        "required": True,
    }
}

# What an error is to a FHIR client: OperationOutcome.issue.code by HTTP status.
ISSUE = {
    401: "login",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    503: "transient",
}


def _wants_fhir(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    fmt = request.query_params.get("_format", "").lower()
    return "fhir+json" in accept or fmt in ("json", "fhir+json", FHIR_JSON)


def operation_outcome(error: LedgerError, request: Request) -> JSONResponse | None:
    """Errors on FHIR routes, for clients that accept FHIR JSON (problem+json otherwise)."""
    if not _wants_fhir(request):
        return None
    code = ISSUE.get(error.status, "exception" if error.status >= 500 else "processing")
    details = error.extra.get("errors")
    issues = [
        {
            "severity": "error",
            "code": code,
            "diagnostics": f"{e['element']}: {e['msg']}",
            "expression": [
                f"{'Bundle' if e['element'].startswith('entry') else 'Consent'}.{e['element']}"
            ],
        }
        for e in (details if isinstance(details, list) else [])
        if isinstance(e, dict) and "element" in e and "msg" in e
    ] or [{"severity": "error", "code": code, "diagnostics": error.detail}]
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(
        {"resourceType": "OperationOutcome", "issue": issues},
        status_code=error.status,
        media_type=FHIR_JSON,
        headers=headers,
    )


render_errors_under(BASE, operation_outcome)


def _keys(state: StateDep) -> Keys:
    return Keys(state.keys.pseudonym_key, SubjectSealer(state.keys.master_key))


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + BASE


async def _body(request: Request) -> tuple[Any, str | None]:
    """The JSON body and the FHIR version the Content-Type declares, if any."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";")[0].strip().lower()
    if media not in (FHIR_JSON, "application/json"):
        raise UnsupportedMediaType("send FHIR JSON (application/fhir+json)")
    declared = None
    for param in ctype.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "fhirversion":
            declared = value.strip().strip('"')
    try:
        return json.loads(await request.body()), declared
    except ValueError as exc:  # http/middleware.py refuses it first; the same answer here
        raise InvalidJson("the body is not valid JSON") from exc


def _fhir(body: dict[str, Any], status: int = 200, **headers: str) -> JSONResponse:
    media = FHIR_JSON
    if body.get("resourceType") == "Consent":
        media += "; fhirVersion=" + ("4.0" if detect_version(body, None) == "R4" else "5.0")
    return JSONResponse(body, status_code=status, media_type=media, headers=headers or None)


def _consent(request: Request, answer: fhir_service.Answer) -> JSONResponse:
    return _fhir(
        answer.resource,
        201 if answer.created else 200,
        Location=f"{_base(request)}/{answer.location}",
        ETag=f'W/"{answer.version}"',
    )


@router.get("/v1/fhir/metadata")
def capability_statement(request: Request, caller: RegistrarOrOversight) -> JSONResponse:
    """The CapabilityStatement: what this FHIR server does."""
    return _fhir(fhir_search.capability(_base(request), __version__))


@router.post("/v1/fhir", openapi_extra=_BODY)
@router.post("/v1/fhir/", include_in_schema=False)
async def fhir_transaction(
    request: Request, session: SessionDep, state: StateDep, caller: Registrar
) -> JSONResponse:
    """A transaction Bundle of Patients and Consents, all or nothing; the answer is a
    transaction-response Bundle (``response.location`` = ``Consent/<id>/_history/<n>``)."""
    bundle, declared = await _body(request)
    out = await run_in_threadpool(
        fhir_service.transaction,
        session,
        _keys(state),
        bundle,
        declared,
        actor=caller.id,
        base=_base(request),
    )
    return _fhir(out)


@router.post("/v1/fhir/Consent", status_code=201, openapi_extra=_BODY)
async def post_fhir_consent(
    request: Request, session: SessionDep, state: StateDep, caller: Registrar
) -> JSONResponse:
    """FHIR R4/R4B or R5 Consent in (its Patient contained, or named by identifier); the
    stored consent back, 201. ``If-None-Exist: identifier=<system>|<value>`` answers an
    existing match with 200 and stores nothing; so does the same resource sent again. Send
    ``Content-Type: application/fhir+json; fhirVersion=4.0`` to say R4 explicitly."""
    resource, declared = await _body(request)
    out = await run_in_threadpool(
        fhir_service.create,
        session,
        _keys(state),
        resource,
        declared,
        actor=caller.id,
        if_none_exist=request.headers.get("if-none-exist"),
    )
    return _consent(request, out)


@router.get("/v1/fhir/Consent")
def search_fhir_consents(
    request: Request, session: SessionDep, state: StateDep, caller: RegistrarOrOversight
) -> JSONResponse:
    """Search by ``patient`` (``Patient/<subject id>``) or ``identifier``, with ``status``
    and ``date`` (prefixes eq ne gt lt ge le): a searchset Bundle."""
    out = fhir_search.search(
        session,
        _keys(state),
        list(request.query_params.multi_items()),
        base=_base(request),
        self_url=str(request.url),
    )
    return _fhir(out)


@router.get("/v1/fhir/Consent/{consent_id}")
def get_fhir_consent(
    consent_id: str,
    request: Request,
    session: SessionDep,
    state: StateDep,
    caller: RegistrarOrOversight,
) -> JSONResponse:
    """The consent in its current state, in the FHIR version it came in (R5 otherwise);
    410 once its subject is erased."""
    return _consent(request, fhir_service.read(session, _keys(state), consent_id))


@router.put("/v1/fhir/Consent/{consent_id}", openapi_extra=_BODY)
async def put_fhir_consent(
    consent_id: str, request: Request, session: SessionDep, state: StateDep, caller: Registrar
) -> JSONResponse:
    """A new version (bitemporal, like every amendment); ``status: inactive`` withdraws.
    The same content again changes nothing. ``If-Match: W/"<version>"`` guards the update."""
    resource, declared = await _body(request)
    out = await run_in_threadpool(
        fhir_service.update,
        session,
        _keys(state),
        consent_id,
        resource,
        declared,
        actor=caller.id,
        if_match=request.headers.get("if-match"),
    )
    return _consent(request, out)


@router.get("/v1/fhir/Consent/{consent_id}/_history")
def fhir_consent_history(
    consent_id: str,
    request: Request,
    session: SessionDep,
    state: StateDep,
    caller: RegistrarOrOversight,
) -> JSONResponse:
    """Every version of the consent, newest first: a history Bundle."""
    return _fhir(fhir_service.history(session, _keys(state), consent_id, _base(request)))


@router.get("/v1/fhir/Consent/{consent_id}/_history/{version}")
def fhir_consent_version(
    consent_id: str,
    version: int,
    request: Request,
    session: SessionDep,
    state: StateDep,
    caller: RegistrarOrOversight,
) -> JSONResponse:
    """One version of the consent, as it was recorded."""
    return _consent(request, fhir_service.read(session, _keys(state), consent_id, version))


@router.get("/v1/fhir/Patient/{subject_id}")
def get_fhir_patient(
    subject_id: str, session: SessionDep, caller: RegistrarOrOversight
) -> JSONResponse:
    """The subject as a pseudonymous Patient (coarse demographics only)."""
    return _fhir(fhir_service.patient(session, subject_id))
