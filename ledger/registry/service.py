"""Model versions and their lineage: model → grants → requests → datasets → subjects'
consents, and back (a subject → the grants and models that used their images).

A model is *flagged* when an image of one of its grants has since lost eligibility
(withdrawal, erasure, a consent that ended): the model was trained lawfully, but its owner
must now decide whether to retrain, and the auditor must see that decision is due.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.access import revocations
from ledger.access.models import AccessRequest, Grant, GrantImage
from ledger.clock import utcnow
from ledger.consent.models import Subject
from ledger.errors import Conflict, Forbidden, InvalidInput, NotFound
from ledger.fields import FreeText, Identifier, Name
from ledger.images.models import Image
from ledger.policy.engine import PolicySet
from ledger.principals.models import Principal
from ledger.provenance import log
from ledger.registry.models import ModelGrant, ModelRecord

USAGES = ("training", "validation", "fine_tuning", "testing")


class GrantUse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grant_id: Identifier = Field(min_length=1, max_length=64)
    usage: Identifier = Field(
        default="training", max_length=32, description=f"one of {', '.join(USAGES)}"
    )


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1, max_length=200)
    version: Name = Field(min_length=1, max_length=64)
    artefact_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the weights")
    grants: list[GrantUse] = Field(min_length=1, max_length=100)
    description: FreeText | None = Field(default=None, max_length=2000)


class ModelGrantPublic(BaseModel):
    grant_id: str
    usage: str
    request_id: str
    dataset_id: str
    purpose: str
    policy_hash: str
    as_of: datetime
    image_count: int
    revoked: bool
    images_no_longer_consented: int
    subjects_no_longer_consented: int


class ModelPublic(BaseModel):
    id: str
    name: str
    version: str
    artefact_sha256: str
    description: str | None
    registered_by: str
    created_at: datetime
    flagged: bool = Field(
        description="an image it was trained or validated on has lost consent, or a grant "
        "it used was revoked"
    )
    grants: list[ModelGrantPublic]


def register(session: Session, body: ModelCreate, *, pipeline_id: str) -> ModelRecord:
    """Register a model version trained/validated under the caller's own grants."""
    seen: set[str] = set()
    for use in body.grants:
        if use.usage not in USAGES:
            raise InvalidInput(f"unknown usage {use.usage!r}; use one of {', '.join(USAGES)}")
        if use.grant_id in seen:
            raise InvalidInput(f"grant {use.grant_id} is listed twice")
        seen.add(use.grant_id)
        grant = session.get(Grant, use.grant_id)
        if grant is None:
            raise NotFound(f"no grant {use.grant_id}")
        if grant.pipeline_id != pipeline_id:
            raise Forbidden(f"grant {use.grant_id} was issued to another pipeline")
    exists = session.execute(
        select(func.count())
        .select_from(ModelRecord)
        .where(col(ModelRecord.name) == body.name, col(ModelRecord.version) == body.version)
    ).scalar_one()
    if exists:
        raise Conflict(f"model {body.name} {body.version} is already registered")
    record = ModelRecord(
        id=str(uuid.uuid4()),
        name=body.name,
        version=body.version,
        artefact_sha256=body.artefact_sha256,
        description=body.description,
        registered_by=pipeline_id,
    )
    session.add(record)
    session.flush()
    for use in body.grants:
        session.add(ModelGrant(model_id=record.id, grant_id=use.grant_id, usage=use.usage))
    session.flush()
    log.append(
        session,
        "model.registered",
        {
            "model_id": record.id,
            "name": record.name,
            "version": record.version,
            "artefact_sha256": record.artefact_sha256,
            "grants": [{"grant_id": u.grant_id, "usage": u.usage} for u in body.grants],
            "grant_ids": [u.grant_id for u in body.grants],
        },
        actor=pipeline_id,
    )
    return record


def get(session: Session, model_id: str) -> ModelRecord:
    record = session.get(ModelRecord, model_id)
    if record is None:
        raise NotFound(f"no model {model_id}")
    return record


def uses(session: Session, model_id: str) -> list[ModelGrant]:
    return list(
        session.execute(select(ModelGrant).where(col(ModelGrant.model_id) == model_id)).scalars()
    )


def _lost_by_grant(
    session: Session, policies: PolicySet, grants: list[Grant]
) -> dict[str, list[revocations.Lost]]:
    """Per grant, the images that lost eligibility since it was issued."""
    out: dict[str, list[revocations.Lost]] = defaultdict(list)
    if not grants:
        return out
    earliest = min(g.issued_at for g in grants)
    subjects = revocations.changed_subjects(session, earliest, utcnow())
    for item in revocations.lost_instances(
        session, policies, subjects, grant_ids=[g.id for g in grants]
    ):
        out[item.grant_id].append(item)
    return out


def describe(session: Session, policies: PolicySet, record: ModelRecord) -> ModelPublic:
    """The model with its lineage (grants, requests, datasets) and whether it is flagged."""
    model_uses = uses(session, record.id)
    grants = [g for g in (session.get(Grant, u.grant_id) for u in model_uses) if g is not None]
    lost = _lost_by_grant(session, policies, grants)
    lineage = []
    for use, grant in zip(model_uses, grants, strict=True):
        request = session.get(AccessRequest, grant.request_id)
        assert request is not None
        lineage.append(
            {
                "grant_id": grant.id,
                "usage": use.usage,
                "request_id": request.id,
                "dataset_id": request.dataset_id,
                "purpose": request.purpose,
                "policy_hash": request.policy_hash,
                "as_of": request.as_of,
                "image_count": request.eligible_count,
                "revoked": grant.revoked_at is not None,
                "images_no_longer_consented": len(lost.get(grant.id, [])),
                "subjects_no_longer_consented": len({i.subject_id for i in lost.get(grant.id, [])}),
            }
        )
    flagged = any(item["images_no_longer_consented"] or item["revoked"] for item in lineage)
    return ModelPublic.model_validate(
        {
            "id": record.id,
            "name": record.name,
            "version": record.version,
            "artefact_sha256": record.artefact_sha256,
            "description": record.description,
            "registered_by": record.registered_by,
            "created_at": record.created_at,
            "flagged": flagged,
            "grants": lineage,
        }
    )


def list_models(
    session: Session, limit: int = 200, *, registered_by: str | None = None
) -> list[ModelRecord]:
    """Newest first; only those ``registered_by`` a pipeline when given
    (``access.visibility.owner_filter``)."""
    query = select(ModelRecord)
    if registered_by is not None:
        query = query.where(col(ModelRecord.registered_by) == registered_by)
    return list(
        session.execute(query.order_by(col(ModelRecord.created_at).desc()).limit(limit)).scalars()
    )


def impact(session: Session, policies: PolicySet, subject_id: str) -> dict[str, Any]:
    """Which grants, pipelines and models used this subject's images (a withdrawal's impact
    report)."""
    subject = session.get(Subject, subject_id)
    if subject is None:
        raise NotFound(f"no subject {subject_id}")
    counts = Counter(
        session.execute(
            select(col(GrantImage.grant_id))
            .join(Image, col(Image.id) == col(GrantImage.image_id))
            .where(col(Image.subject_id) == subject_id)
        ).scalars()
    )
    lost = revocations.lost_instances(session, policies, {subject_id})
    blocked = Counter(i.grant_id for i in lost)
    grants: list[dict[str, Any]] = []
    for grant_id, n in sorted(counts.items()):
        grant = session.get(Grant, grant_id)
        assert grant is not None
        pipeline = session.get(Principal, grant.pipeline_id)
        models = session.execute(
            select(ModelRecord, col(ModelGrant.usage))
            .join(ModelGrant, col(ModelGrant.model_id) == col(ModelRecord.id))
            .where(col(ModelGrant.grant_id) == grant_id)
        ).all()
        grants.append(
            {
                "grant_id": grant_id,
                "pipeline_id": grant.pipeline_id,
                "pipeline_name": pipeline.name if pipeline else None,
                "images": n,
                "images_blocked_now": blocked.get(grant_id, 0),
                "revoked": grant.revoked_at is not None,
                "expires_at": grant.expires_at,
                "models": [
                    {"id": m.id, "name": m.name, "version": m.version, "usage": usage}
                    for m, usage in models
                ],
            }
        )
    return {
        "subject_id": subject_id,
        "erased": subject.erased_at is not None,
        "grants": grants,
        "pipelines": sorted({g["pipeline_id"] for g in grants}),
        "models": sorted({m["id"] for g in grants for m in g["models"]}),
    }
