"""DICOMweb routes: STOW-RS in (a PACS forwards new instances), and QIDO-RS / WADO-RS out
under a grant (``ledger.access.dicomweb``, which runs every release check).

Thin: each route parses what HTTP gives it, calls one service function and frames the
answer (``application/dicom+json`` or ``multipart/related; type="application/dicom"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from ledger.access import dicomweb, dicomweb_retrieve, release
from ledger.http.deps import AppState, SessionDep, StateDep, unit_of_work
from ledger.http.security import Caller, Curator, ReadonlyPipeline
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
#
# These routes are what a pipeline calls study after study, so each is async and does its
# whole call (open the grant, re-check, log, commit) in one thread hand-off, with the
# caller authenticated through the key cache (``ReadonlyPipeline``): a route with sync
# session dependencies costs a hand-off for each of them, and one more for itself.

T = TypeVar("T")

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
METADATA = {200: {"content": {DICOM_JSON: {}}, "description": "de-identified attributes"}}
# A streamed answer is framed into buffers of about this size: one 512x512 CT image each,
# so a pipeline receives the first image as soon as it is rendered, not after several.
STREAM_CHUNK = 256 << 10


async def _in_one_hop(state: AppState, work: Callable[[Session], T], *, readonly: bool) -> T:
    """``work`` in a transaction of its own, in one thread hand-off; committed (or rolled
    back, when ``readonly``) before the answer is sent, as ``SessionDep`` does."""

    def run() -> T:
        with unit_of_work(state, readonly=readonly) as session:
            return work(session)

    return await run_in_threadpool(run)


def _with_warnings(response: Response, warnings: list[str]) -> Response:
    for text in warnings:
        response.headers.append("Warning", f'299 ledger "{_quoted(text)}"')
    return response


async def _search(
    request: Request,
    state: AppState,
    caller: Caller,
    grant_id: str,
    token: str | None,
    level: dicomweb.Level,
    study: str | None = None,
    series: str | None = None,
) -> Response:
    query: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, []).append(value)

    def work(session: Session) -> dicomweb.Found:
        return dicomweb.search(
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

    found = await _in_one_hop(state, work, readonly=True)
    return _with_warnings(JSONResponse(found.matches, media_type=DICOM_JSON), found.warnings)


@router.get(BASE + "/studies", response_class=JSONResponse, responses=QIDO)  # type: ignore[arg-type]
async def search_studies(
    grant_id: str,
    request: Request,
    state: StateDep,
    caller: ReadonlyPipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """QIDO-RS: the grant's studies with an instance eligible now (de-identified UIDs,
    modalities, counts). Matches on StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID,
    SOPClassUID, Modality, ModalitiesInStudy; ``offset`` and ``limit``."""
    return await _search(request, state, caller, grant_id, grant_token, "studies")


@router.get(BASE + "/studies/{study}/series", response_class=JSONResponse, responses=QIDO)  # type: ignore[arg-type]
async def search_series(
    grant_id: str,
    study: str,
    request: Request,
    state: StateDep,
    caller: ReadonlyPipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """QIDO-RS: a study's series in the grant."""
    return await _search(request, state, caller, grant_id, grant_token, "series", study)


@router.get(BASE + "/studies/{study}/instances", response_class=JSONResponse, responses=QIDO)  # type: ignore[arg-type]
async def search_study_instances(
    grant_id: str,
    study: str,
    request: Request,
    state: StateDep,
    caller: ReadonlyPipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """QIDO-RS: a study's instances in the grant."""
    return await _search(request, state, caller, grant_id, grant_token, "instances", study)


@router.get(
    BASE + "/studies/{study}/series/{series}/instances",
    response_class=JSONResponse,
    responses=QIDO,  # type: ignore[arg-type]
)
async def search_instances(
    grant_id: str,
    study: str,
    series: str,
    request: Request,
    state: StateDep,
    caller: ReadonlyPipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """QIDO-RS: a series' instances in the grant."""
    return await _search(request, state, caller, grant_id, grant_token, "instances", study, series)


async def _retrieve(
    state: AppState,
    caller: Caller,
    grant_id: str,
    token: str | None,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> Response:
    desk = state.release_desk()

    def work(session: Session) -> dicomweb_retrieve.Retrieved:
        got = dicomweb_retrieve.retrieve(
            session,
            desk,
            grant_id,
            token,
            pipeline_id=caller.id,
            study=study,
            series=series,
            sop=sop,
        )
        try:
            session.commit()  # the log entry, before a byte is sent
        except BaseException:  # nothing will be sent: the slot goes back now
            got.close()
            raise
        return got

    got = await _in_one_hop(state, work, readonly=False)
    boundary = multipart.new_boundary()
    headers = {"Ledger-Released": str(got.released), "Ledger-Refused": str(got.left_out)}
    response = StreamingResponse(
        multipart.frame_pieces(got.files, boundary, chunk=STREAM_CHUNK),
        media_type=multipart.content_type(boundary),
        headers=headers,
        background=BackgroundTask(got.close),  # the slot, however the stream ended
    )
    warnings = []
    if got.left_out:
        warnings.append(f"{got.left_out} instance(s) are no longer eligible and were left out")
    return _with_warnings(response, warnings)


@router.get(BASE + "/studies/{study}", response_class=StreamingResponse, responses=WADO)  # type: ignore[arg-type]
async def retrieve_study(
    grant_id: str,
    study: str,
    state: StateDep,
    caller: ReadonlyPipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """WADO-RS: a study's de-identified instances (``multipart/related;
    type="application/dicom"``, streamed); those no longer eligible are left out and
    counted in a ``Warning``; 410 if none is left."""
    return await _retrieve(state, caller, grant_id, grant_token, study)


@router.get(
    BASE + "/studies/{study}/series/{series}",
    response_class=StreamingResponse,
    responses=WADO,  # type: ignore[arg-type]
)
async def retrieve_series(
    grant_id: str,
    study: str,
    series: str,
    state: StateDep,
    caller: ReadonlyPipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """WADO-RS: a series' de-identified instances (as for a study)."""
    return await _retrieve(state, caller, grant_id, grant_token, study, series)


@router.get(
    BASE + "/studies/{study}/series/{series}/instances/{sop}",
    response_class=StreamingResponse,
    responses=WADO,  # type: ignore[arg-type]
)
async def retrieve_instance(
    grant_id: str,
    study: str,
    series: str,
    sop: str,
    state: StateDep,
    caller: ReadonlyPipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """WADO-RS: one de-identified instance; 410 if it is no longer eligible."""
    return await _retrieve(state, caller, grant_id, grant_token, study, series, sop)


# -- WADO-RS metadata: de-identified attributes, without pixel data ---------------------------


async def _metadata(
    state: AppState,
    caller: Caller,
    grant_id: str,
    token: str | None,
    study: str,
    series: str | None = None,
    sop: str | None = None,
) -> Response:
    def work(session: Session) -> dicomweb.Found:
        return dicomweb_retrieve.metadata(
            session,
            state.release_desk(),
            grant_id,
            token,
            pipeline_id=caller.id,
            study=study,
            series=series,
            sop=sop,
        )

    found = await _in_one_hop(state, work, readonly=False)
    response = JSONResponse(
        found.matches,
        media_type=DICOM_JSON,
        headers={"Ledger-Released": str(len(found.matches)), "Ledger-Refused": str(found.left_out)},
    )
    return _with_warnings(response, found.warnings)


@router.get(BASE + "/studies/{study}/metadata", response_class=JSONResponse, responses=METADATA)  # type: ignore[arg-type]
async def retrieve_study_metadata(
    grant_id: str,
    study: str,
    state: StateDep,
    caller: ReadonlyPipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """WADO-RS metadata: the de-identified attributes of a study's instances (DICOM
    JSON, no pixel data), released and logged as the files are; those no longer eligible
    are left out and counted in a ``Warning``; 410 if none is left."""
    return await _metadata(state, caller, grant_id, grant_token, study)


@router.get(
    BASE + "/studies/{study}/series/{series}/metadata",
    response_class=JSONResponse,
    responses=METADATA,  # type: ignore[arg-type]
)
async def retrieve_series_metadata(
    grant_id: str,
    study: str,
    series: str,
    state: StateDep,
    caller: ReadonlyPipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """WADO-RS metadata: a series' instances (as for a study)."""
    return await _metadata(state, caller, grant_id, grant_token, study, series)


@router.get(
    BASE + "/studies/{study}/series/{series}/instances/{sop}/metadata",
    response_class=JSONResponse,
    responses=METADATA,  # type: ignore[arg-type]
)
async def retrieve_instance_metadata(
    grant_id: str,
    study: str,
    series: str,
    sop: str,
    state: StateDep,
    caller: ReadonlyPipeline,
    grant_token: GrantHeader = None,
) -> Response:
    """WADO-RS metadata: one instance's de-identified attributes; 410 if it is no
    longer eligible, 409 if de-identification withholds it."""
    return await _metadata(state, caller, grant_id, grant_token, study, series, sop)
