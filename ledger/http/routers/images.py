"""HTTP routes for images, datasets and subject erasure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ledger.errors import UnsupportedMediaType
from ledger.http.deps import SessionDep, StateDep
from ledger.http.security import Curator, CuratorOrOversight, Erasure
from ledger.images import datasets, service
from ledger.images.datasets import DatasetCreate, DatasetPublic
from ledger.limits import MAX_INT

router = APIRouter(tags=["images"])

DICOM = "application/dicom"


@router.post(
    "/v1/images",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "content": {DICOM: {"schema": {"type": "string", "format": "binary"}}},
            "required": True,
        }
    },
)
async def post_image(
    request: Request, session: SessionDep, state: StateDep, caller: Curator
) -> JSONResponse:
    """One DICOM instance (``application/dicom``). The subject comes from
    IssuerOfPatientID (or the configured default issuer) and PatientID. A file already
    stored (same bytes) answers 200 with ``duplicate: true`` and is not stored again."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != DICOM:
        raise UnsupportedMediaType("send one DICOM instance as application/dicom")
    data = await request.body()
    done = await run_in_threadpool(
        service.ingest,
        session,
        state.store,
        state.keys,
        data,
        default_issuer=state.settings.default_issuer,
        actor=caller.id,
    )
    return JSONResponse(
        jsonable_encoder(service.public(done.image, done.duplicate)),
        status_code=200 if done.duplicate else 201,
    )


@router.get("/v1/images/{image_id}")
def get_image(image_id: str, session: SessionDep, caller: CuratorOrOversight) -> dict[str, Any]:
    """An image's index entry (never its pixels: those leave only through a grant)."""
    return service.public(service.get(session, image_id))


@router.post("/v1/subjects/{subject_id}/erase")
def erase_subject(
    subject_id: str,
    session: SessionDep,
    state: StateDep,
    caller: Erasure,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Right to erasure: shred the subject's image key, strip index fields and unlink its
    log entries (which stay verifiable); the objects are deleted after the commit."""
    addresses = service.erase_subject(session, subject_id, actor=caller.id, vault=state.vault())
    for address in addresses:
        background.add_task(state.store.delete, address)
    return {"subject_id": subject_id, "erased": True, "images": len(addresses)}


@router.post("/v1/datasets", status_code=201, response_model=DatasetPublic)
def create_dataset(
    body: DatasetCreate, session: SessionDep, state: StateDep, caller: Curator
) -> DatasetPublic:
    """Freeze a named set of images, by explicit ids or by filter; its identity is the
    Merkle root of its manifest."""
    return datasets.public(datasets.create(session, body, actor=caller.id, vault=state.vault()))


@router.get("/v1/datasets/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: str, session: SessionDep, caller: CuratorOrOversight) -> DatasetPublic:
    return datasets.public(datasets.get(session, dataset_id))


@router.get("/v1/datasets/{dataset_id}/manifest")
def get_manifest(
    dataset_id: str,
    session: SessionDep,
    caller: CuratorOrOversight,
    start: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """The manifest in leaf order, a page at a time; recompute the root from all leaves
    with ``ledger.provenance.merkle.root_hash`` to check it."""
    record, items, next_start = datasets.manifest(session, dataset_id, start, limit)
    return {
        "id": record.id,
        "manifest_root": bytes(record.manifest_root).hex(),
        "image_count": record.image_count,
        "items": items,
        "next_start": next_start,
    }
