"""FHIR routes: Consent resources in (R4/R4B/R5) and out (R5), as a hospital's consent
system exchanges them."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger.consent import service
from ledger.errors import InvalidJson, UnsupportedMediaType
from ledger.http.deps import SessionDep, StateDep
from ledger.http.security import Registrar, RegistrarOrOversight

router = APIRouter(tags=["fhir"])
FHIR_JSON = "application/fhir+json"


@router.post(
    "/v1/fhir/Consent",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "content": {FHIR_JSON: {"schema": {"type": "object"}}, "application/json": {}},
            "required": True,
        }
    },
)
async def post_fhir_consent(
    request: Request, session: SessionDep, state: StateDep, caller: Registrar
) -> JSONResponse:
    """FHIR R4/R4B or R5 Consent in; the stored consent back as R5. Send
    ``Content-Type: application/fhir+json; fhirVersion=4.0`` to say R4 explicitly."""
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
        resource = json.loads(await request.body())
    except ValueError as exc:  # http/middleware.py refuses it first; the same answer here
        raise InvalidJson("the body is not valid JSON") from exc

    out = await run_in_threadpool(
        service.import_fhir,
        session,
        state.keys.pseudonym_key,
        resource,
        declared,
        actor=caller.id,
    )
    return JSONResponse(
        out,
        status_code=201,
        media_type=FHIR_JSON,
        headers={"Location": f"/v1/fhir/Consent/{out['id']}"},
    )


@router.get("/v1/fhir/Consent/{consent_id}")
def get_fhir_consent(
    consent_id: str, session: SessionDep, caller: RegistrarOrOversight
) -> JSONResponse:
    """The consent as a FHIR R5 Consent, in its current state."""
    return JSONResponse(service.fhir_resource(session, consent_id), media_type=FHIR_JSON)
