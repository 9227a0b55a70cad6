"""DICOMweb routes: STOW-RS in (a PACS forwards new instances), and QIDO-RS / WADO-RS out
under a grant (``ledger.access.dicomweb``, which runs every release check).

Thin: each route parses what HTTP gives it, calls one service function and frames the
answer (``application/dicom+json`` or ``multipart/related; type="application/dicom"``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ledger.access import dicomweb, release
from ledger.http.deps import SessionDep, StateDep, WriteSessionDep
from ledger.http.security import Caller, Curator, Pipeline
from ledger.images import multipart, stow

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


# -- release under a grant: QIDO-RS and WADO-RS ---------------------------------------------

GrantHeader = Annotated[
    str | None,
    Header(alias=release.GRANT_HEADER, description="The grant, a compact JWS."),
]
BASE = "/v1/grants/{grant_id}/dicomweb"
QIDO = {200: {"content": {DICOM_JSON: {}}, "description": "matches, de-identified"}}
WADO = {
    200: {
        "content": {multipart.content_type("BOUNDARY"): {}},
        "description": "de-identified instances, streamed",
    }
}


def _search(
    request: Request,
    session: SessionDep,
    state: StateDep,
    caller: Caller,
    grant_id: str,
    token: str | None,
    level: dicomweb.Level,
    study: str | None = None,
    series: str | None = None,
) -> JSONResponse:
    query: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, []).append(value)
    found = dicomweb.search(
        session,
        state.release_desk(),
        grant_id,
        token,
        level,
        query,
        pipeline_id=caller.id,
        study=study,
        series=series,
    )
    response = JSONResponse(found.matches, media_type=DICOM_JSON)
    for text in found.warnings:
        response.headers.append("Warning", f'299 ledger "{_quoted(text)}"')
    return response


@router.get(BASE + "/studies", response_class=JSONResponse, responses=QIDO)  # type: ignore[arg-type]
def search_studies(
    grant_id: str,
    request: Request,
    session: SessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> JSONResponse:
    """QIDO-RS: the grant's studies with an instance eligible now (de-identified UIDs,
    modalities, counts). Matches on StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID,
    SOPClassUID, Modality, ModalitiesInStudy; ``offset`` and ``limit``."""
    return _search(request, session, state, caller, grant_id, grant_token, "studies")


@router.get(BASE + "/studies/{study}/series", response_class=JSONResponse, responses=QIDO)  # type: ignore[arg-type]
def search_series(
    grant_id: str,
    study: str,
    request: Request,
    session: SessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> JSONResponse:
    """QIDO-RS: a study's series in the grant."""
    return _search(request, session, state, caller, grant_id, grant_token, "series", study)


@router.get(BASE + "/studies/{study}/instances", response_class=JSONResponse, responses=QIDO)  # type: ignore[arg-type]
def search_study_instances(
    grant_id: str,
    study: str,
    request: Request,
    session: SessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> JSONResponse:
    """QIDO-RS: a study's instances in the grant."""
    return _search(request, session, state, caller, grant_id, grant_token, "instances", study)


@router.get(
    BASE + "/studies/{study}/series/{series}/instances",
    response_class=JSONResponse,
    responses=QIDO,  # type: ignore[arg-type]
)
def search_instances(
    grant_id: str,
    study: str,
    series: str,
    request: Request,
    session: SessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> JSONResponse:
    """QIDO-RS: a series' instances in the grant."""
    return _search(
        request, session, state, caller, grant_id, grant_token, "instances", study, series
    )


def _retrieve(
    session: WriteSessionDep,
    state: StateDep,
    caller: Caller,
    grant_id: str,
    token: str | None,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> StreamingResponse:
    got = dicomweb.retrieve(
        session,
        state.release_desk(),
        grant_id,
        token,
        pipeline_id=caller.id,
        study=study,
        series=series,
        sop=sop,
    )
    boundary = multipart.new_boundary()
    headers = {"Ledger-Released": str(got.released), "Ledger-Refused": str(got.left_out)}
    response = StreamingResponse(
        multipart.frame_pieces(got.files, boundary),
        media_type=multipart.content_type(boundary),
        headers=headers,
    )
    if got.left_out:
        text = f"{got.left_out} instance(s) are no longer eligible and were left out"
        response.headers.append("Warning", f'299 ledger "{text}"')
    return response


@router.get(BASE + "/studies/{study}", response_class=StreamingResponse, responses=WADO)  # type: ignore[arg-type]
def retrieve_study(
    grant_id: str,
    study: str,
    session: WriteSessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> StreamingResponse:
    """WADO-RS: a study's de-identified instances (``multipart/related;
    type="application/dicom"``, streamed); those no longer eligible are left out and
    counted in a ``Warning``; 410 if none is left."""
    return _retrieve(session, state, caller, grant_id, grant_token, study)


@router.get(
    BASE + "/studies/{study}/series/{series}",
    response_class=StreamingResponse,
    responses=WADO,  # type: ignore[arg-type]
)
def retrieve_series(
    grant_id: str,
    study: str,
    series: str,
    session: WriteSessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> StreamingResponse:
    """WADO-RS: a series' de-identified instances (as for a study)."""
    return _retrieve(session, state, caller, grant_id, grant_token, study, series)


@router.get(
    BASE + "/studies/{study}/series/{series}/instances/{sop}",
    response_class=StreamingResponse,
    responses=WADO,  # type: ignore[arg-type]
)
def retrieve_instance(
    grant_id: str,
    study: str,
    series: str,
    sop: str,
    session: WriteSessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> StreamingResponse:
    """WADO-RS: one de-identified instance; 410 if it is no longer eligible."""
    return _retrieve(session, state, caller, grant_id, grant_token, study, series, sop)


# -- WADO-RS metadata: de-identified attributes, without pixel data ---------------------------

METADATA = {200: {"content": {DICOM_JSON: {}}, "description": "de-identified attributes"}}


def _metadata(
    session: WriteSessionDep,
    state: StateDep,
    caller: Caller,
    grant_id: str,
    token: str | None,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> JSONResponse:
    found = dicomweb.metadata(
        session,
        state.release_desk(),
        grant_id,
        token,
        pipeline_id=caller.id,
        study=study,
        series=series,
        sop=sop,
    )
    response = JSONResponse(
        found.matches,
        media_type=DICOM_JSON,
        headers={"Ledger-Released": str(len(found.matches)), "Ledger-Refused": str(found.left_out)},
    )
    for text in found.warnings:
        response.headers.append("Warning", f'299 ledger "{_quoted(text)}"')
    return response


@router.get(BASE + "/studies/{study}/metadata", response_class=JSONResponse, responses=METADATA)  # type: ignore[arg-type]
def retrieve_study_metadata(
    grant_id: str,
    study: str,
    session: WriteSessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> JSONResponse:
    """WADO-RS metadata: the de-identified attributes of a study's instances (DICOM
    JSON, no pixel data), released and logged as the files are; those no longer eligible
    are left out and counted in a ``Warning``; 410 if none is left."""
    return _metadata(session, state, caller, grant_id, grant_token, study)


@router.get(
    BASE + "/studies/{study}/series/{series}/metadata",
    response_class=JSONResponse,
    responses=METADATA,  # type: ignore[arg-type]
)
def retrieve_series_metadata(
    grant_id: str,
    study: str,
    series: str,
    session: WriteSessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> JSONResponse:
    """WADO-RS metadata: a series' instances (as for a study)."""
    return _metadata(session, state, caller, grant_id, grant_token, study, series)


@router.get(
    BASE + "/studies/{study}/series/{series}/instances/{sop}/metadata",
    response_class=JSONResponse,
    responses=METADATA,  # type: ignore[arg-type]
)
def retrieve_instance_metadata(
    grant_id: str,
    study: str,
    series: str,
    sop: str,
    session: WriteSessionDep,
    state: StateDep,
    caller: Pipeline,
    grant_token: GrantHeader = None,
) -> JSONResponse:
    """WADO-RS metadata: one instance's de-identified attributes; 410 if it is no
    longer eligible, 409 if de-identification withholds it."""
    return _metadata(session, state, caller, grant_id, grant_token, study, series, sop)
