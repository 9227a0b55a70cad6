"""DICOMweb routes: STOW-RS in (a PACS forwards new instances), and QIDO-RS / WADO-RS out
under a grant (``ledger.access.dicomweb``, which runs every release check).

Thin: each route parses what HTTP gives it, calls one service function and frames the
answer (``application/dicom+json`` or ``multipart/related; type="application/dicom"``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger.http.deps import SessionDep, StateDep
from ledger.http.security import Curator
from ledger.images import stow

router = APIRouter(tags=["dicomweb"])

DICOM_JSON = "application/dicom+json"
STOW_PATH = "/v1/dicomweb/studies"


@router.post(
    STOW_PATH,
    response_class=JSONResponse,
    openapi_extra={
        "requestBody": {
            "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
            "required": True,
        }
    },
    responses={
        200: {"content": {DICOM_JSON: {}}, "description": "every instance stored"},
        202: {"content": {DICOM_JSON: {}}, "description": "some instances failed"},
        409: {"content": {DICOM_JSON: {}}, "description": "no instance stored"},
    },
)
async def store_instances(
    request: Request, session: SessionDep, state: StateDep, caller: Curator
) -> JSONResponse:
    """STOW-RS (``multipart/related; type="application/dicom"``): each instance goes
    through the same checks as ``POST /v1/images``. Answers the Store Instances Response
    (``ReferencedSOPSequence``, ``FailedSOPSequence`` with ``FailureReason``) as DICOM
    JSON: 200 all stored, 202 some failed, 409 none stored; why each failed is also in a
    ``Warning`` header."""
    content_type = request.headers.get("content-type", "")
    stow.boundary_of_request(content_type)  # 415 before the body is read
    body = await request.body()
    outcome = await run_in_threadpool(
        stow.store_instances,
        session,
        state.store,
        state.keys,
        body,
        content_type,
        default_issuer=state.settings.default_issuer,
        actor=caller.id,
    )
    response = JSONResponse(
        outcome.as_dicom_json(), status_code=outcome.status, media_type=DICOM_JSON
    )
    for text in outcome.warnings():
        response.headers.append("Warning", f'299 ledger "{_quoted(text)}"')
    return response


def _quoted(text: str) -> str:
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return clean.replace("\\", "\\\\").replace('"', '\\"')
