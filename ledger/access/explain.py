"""Explaining decisions after the fact: why one image was (not) eligible, and whether a
past request, re-evaluated as of its ``as_of``, still gets the same answer."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.access import decision, evaluation, request_views, service
from ledger.access.classes import Outcomes
from ledger.consent import facts as consent_facts
from ledger.consent.in_force import effective_consents
from ledger.errors import NotFound
from ledger.images.models import DatasetImage, Image


def replay(session: Session, ctx: service.Context, request_id: str) -> dict[str, Any]:
    """Re-evaluate a past request as of its ``as_of``: the same consents (bitemporal) and,
    if the policy set is unchanged, the same answer; otherwise, what changed."""
    request = request_views.get(session, request_id)
    result = evaluation.evaluate(
        session,
        ctx.policies,
        request.dataset_id,
        decision.purpose_of(request),
        request.as_of,
        threshold=ctx.settings.composition_threshold,
        vault=ctx.vault,
    )
    same_policy = ctx.policies.hash == request.policy_hash
    before = Outcomes.stored(request.classes, request.outcomes).eligible()
    flips = np.flatnonzero(before != result.eligible_positions()).tolist()
    return {
        "request_id": request.id,
        "as_of": request.as_of,
        "policy_hash_then": request.policy_hash,
        "policy_hash_now": ctx.policies.hash,
        "same_policy": same_policy,
        "same_consent_snapshot": result.consent_snapshot == request.consent_snapshot,
        "same_answer": bytes(request.eligible_root) == result.eligible_root,
        "eligible_then": request.eligible_count,
        "eligible_now": result.eligible_count,
        "changed_images": _image_ids(session, request.dataset_id, flips[:100]),
        "changed_count": len(flips),
    }


def _image_ids(session: Session, dataset_id: str, positions: list[int]) -> list[str]:
    rows = session.execute(
        select(col(DatasetImage.position), col(DatasetImage.image_id)).where(
            col(DatasetImage.dataset_id) == dataset_id,
            col(DatasetImage.position).in_(positions),
        )
    )
    found: dict[int, str] = dict(rows.all())
    return [found[p] for p in positions]


def explain(session: Session, request_id: str, image_id: str) -> dict[str, Any]:
    """Why one image was (not) eligible: its class's policies and the consents in force."""
    request = request_views.get(session, request_id)
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"no image {image_id}")
    position = session.execute(
        select(col(DatasetImage.position)).where(
            col(DatasetImage.dataset_id) == request.dataset_id,
            col(DatasetImage.image_id) == image_id,
        )
    ).scalar_one_or_none()
    if position is None:
        raise NotFound("this image is not in the request's dataset")
    cls = Outcomes.stored(request.classes, request.outcomes)[position]
    in_force = effective_consents(session, request.as_of, [image.subject_id])
    outcome = consent_facts.decide(
        in_force.get(image.subject_id, []),
        decision.purpose_of(request),
        consent_facts.ImageFacts(image.modality, image.body_part, image.study_date),
    )
    return {
        "image_id": image_id,
        "sop_instance_uid": image.sop_uid,
        "eligible": cls.eligible,
        "policy_ids": list(cls.policy_ids),
        "reasons": [*cls.reasons, *outcome.reasons],
        "consent_ids": sorted(f.consent_id for f in in_force.get(image.subject_id, [])),
    }
