"""Datasets: frozen, named manifests of images.

A dataset's identity is the RFC 9162 Merkle root over its images' leaves in byte order, so
the same images always give the same root, wherever and whenever it is computed, and a
grant bound to the root is bound to exactly these images. Leaves were computed at ingest;
the database returns them sorted; building the root is one pass of node hashes.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.consent.models import Subject
from ledger.consent.schemas import StudyDateRange
from ledger.db import bulk_insert, driver_rows
from ledger.dbtypes import table_of
from ledger.errors import Conflict, InvalidInput, NotFound
from ledger.fields import Identifier, Name
from ledger.images import columns
from ledger.images.models import DatasetImage, DatasetRecord, Image
from ledger.provenance import log, merkle_workers

MAX_EXPLICIT = 1_000_000


class DatasetFilter(StudyDateRange):
    modalities: list[Identifier] = Field(default_factory=list)
    body_parts: list[Identifier] = Field(default_factory=list)
    sites: list[Name] = Field(default_factory=list)


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1, max_length=200)
    # Plain strings: up to a million of them, and an unknown id is refused anyway.
    image_ids: list[str] | None = Field(default=None, max_length=MAX_EXPLICIT)
    filter: DatasetFilter | None = None

    @model_validator(mode="after")
    def _one(self) -> DatasetCreate:
        if (self.image_ids is None) == (self.filter is None):
            raise ValueError("give exactly one of image_ids or filter")
        return self


class DatasetPublic(BaseModel):
    id: str
    name: str
    manifest_root: str = Field(description="RFC 9162 root over the sorted image leaves, hex.")
    image_count: int
    selection: dict[str, Any]
    created_by: str | None
    created_at: Any


def public(record: DatasetRecord) -> DatasetPublic:
    return DatasetPublic(
        id=record.id,
        name=record.name,
        manifest_root=bytes(record.manifest_root).hex(),
        image_count=record.image_count,
        selection=record.selection,
        created_by=record.created_by,
        created_at=record.created_at,
    )


def _filtered(f: DatasetFilter) -> Select[Any]:
    query = select(*columns.selected()).where(col(Image.erased_at).is_(None))
    if f.modalities:
        query = query.where(col(Image.modality).in_([m.upper() for m in f.modalities]))
    if f.body_parts:
        query = query.where(col(Image.body_part).in_([b.upper() for b in f.body_parts]))
    if f.study_date_from:
        query = query.where(col(Image.study_date) >= f.study_date_from)
    if f.study_date_to:
        query = query.where(col(Image.study_date) <= f.study_date_to)
    if f.sites:
        query = query.join(Subject, col(Subject.id) == col(Image.subject_id)).where(
            col(Subject.site).in_(f.sites)
        )
    return query


def _explicit(session: Session, ids: list[str]) -> list[Any]:
    unique = list(dict.fromkeys(ids))
    found: list[Any] = []
    for i in range(0, len(unique), 5_000):
        part = unique[i : i + 5_000]
        found.extend(
            driver_rows(
                session,
                select(*columns.selected()).where(
                    col(Image.id).in_(part), col(Image.erased_at).is_(None)
                ),
            )
        )
    if len(found) != len(unique):
        missing = sorted(set(unique) - {r[0] for r in found})
        raise InvalidInput(
            f"{len(missing)} image id(s) unknown or erased: {', '.join(missing[:10])}",
            missing=missing[:100],
        )
    return found


def create(
    session: Session,
    body: DatasetCreate,
    *,
    actor: str | None,
    vault: columns.Vault | None = None,
) -> DatasetRecord:
    if session.execute(
        select(func.count()).select_from(DatasetRecord).where(col(DatasetRecord.name) == body.name)
    ).scalar_one():
        raise Conflict(
            f"a dataset named {body.name!r} exists; datasets are frozen, pick a new name"
        )
    rows: list[Any]
    if body.filter is not None:
        rows = driver_rows(session, _filtered(body.filter))
        if not rows:
            raise InvalidInput("the filter matches no images; nothing was created")
        selection: dict[str, Any] = {"filter": body.filter.model_dump(mode="json")}
    else:
        rows = _explicit(session, body.image_ids or [])
        if not rows:
            raise InvalidInput("image_ids is empty")
        selection = {"image_ids": len(rows)}
    rows.sort(key=lambda r: bytes(r[7]))
    packed = columns.of_rows(rows)
    root = merkle_workers.root(packed.leaves.tobytes())
    record = DatasetRecord(
        id=str(uuid.uuid4()),
        name=body.name,
        manifest_root=root,
        image_count=len(rows),
        selection=selection,
        created_by=actor,
    )
    session.add(record)
    session.flush()
    bulk_insert(
        session,
        table_of(DatasetImage),
        [{"dataset_id": record.id, "position": n, "image_id": r[0]} for n, r in enumerate(rows)],
    )
    columns.store(session, record.id, packed, vault)
    log.append(
        session,
        "dataset.created",
        {
            "dataset_id": record.id,
            "manifest_root": root.hex(),
            "image_count": len(rows),
            "selection": selection,
        },
        actor=actor,
    )
    return record


def get(session: Session, dataset_id: str) -> DatasetRecord:
    record = session.get(DatasetRecord, dataset_id)
    if record is None:
        raise NotFound(f"no dataset {dataset_id}")
    return record


def manifest(
    session: Session, dataset_id: str, start: int = 0, limit: int = 1000
) -> tuple[DatasetRecord, list[dict[str, Any]], int | None]:
    """One page of the manifest in leaf order: position, image, content hash, leaf."""
    record = get(session, dataset_id)
    rows = session.execute(
        select(col(DatasetImage.position), col(Image.id), col(Image.sha256), col(Image.leaf_hash))
        .join(Image, col(Image.id) == col(DatasetImage.image_id))
        .where(col(DatasetImage.dataset_id) == dataset_id, col(DatasetImage.position) >= start)
        .order_by(col(DatasetImage.position))
        .limit(limit + 1)
    ).all()
    items = [
        {"position": p, "image_id": i, "sha256": s, "leaf_hash": bytes(h).hex()}
        for p, i, s, h in rows[:limit]
    ]
    next_start = rows[limit][0] if len(rows) > limit else None
    return record, items, next_start
