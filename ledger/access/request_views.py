"""Access requests as their readers see them (the API, the console, the CLI): one or a
list, with their reviews, grant and obligations. Changes are in ``ledger.access.service``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.access.models import AccessRequest, AccessReview, Grant
from ledger.access.schemas import AccessRequestPublic, Evaluation, ReviewPublic
from ledger.errors import NotFound


def obligations_of(session: Session, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per request, the obligations its grant carries (PUB, RTN, COL, MOR, IRB)."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(request_ids), 500):
        rows = session.execute(
            select(col(AccessRequest.id), col(AccessRequest.evaluation)).where(
                col(AccessRequest.id).in_(request_ids[i : i + 500])
            )
        )
        out.update({rid: dict(e.get("obligations") or {}) for rid, e in rows})
    return out


def get(session: Session, request_id: str) -> AccessRequest:
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound(f"no access request {request_id}")
    return request


def reviews(session: Session, request_id: str) -> list[AccessReview]:
    return list(
        session.execute(
            select(AccessReview)
            .where(col(AccessReview.request_id) == request_id)
            .order_by(col(AccessReview.created_at))
        ).scalars()
    )


def grant_of(session: Session, request_id: str) -> Grant | None:
    return session.execute(
        select(Grant).where(col(Grant.request_id) == request_id)
    ).scalar_one_or_none()


def public(session: Session, request: AccessRequest) -> AccessRequestPublic:
    grant = grant_of(session, request.id)
    e = request.evaluation
    return AccessRequestPublic(
        id=request.id,
        requester_id=request.requester_id,
        dataset_id=request.dataset_id,
        purpose=request.purpose,
        duo_category=request.duo_category,
        justification=request.justification,
        irb_reference=request.irb_reference,
        commercial=request.commercial,
        conditions=request.conditions or {},
        status=request.status,
        as_of=request.as_of,
        policy_hash=request.policy_hash,
        consent_snapshot=request.consent_snapshot,
        evaluation=Evaluation(
            eligible_count=request.eligible_count,
            excluded_count=request.excluded_count,
            excluded_by_reason=e["excluded_by_reason"],
            classes=e["classes"],
            eligible_root=bytes(request.eligible_root).hex(),
            required_approvals=request.required_approvals,
            auto_approved=request.auto_approved,
            cohort_ok=e["cohort_ok"],
            request_reasons=e["request_reasons"],
            composition=e["composition"],
            timings_ms=e.get("timings_ms", {}),
            sensitive_research=e.get("sensitive_research", []),
            obligations=e.get("obligations", {}),
        ),
        reviews=[
            ReviewPublic(
                steward_id=r.steward_id,
                verdict=r.verdict,
                comment=r.comment,
                created_at=r.created_at,
            )
            for r in reviews(session, request.id)
        ],
        grant_id=grant.id if grant else None,
        created_at=request.created_at,
        decided_at=request.decided_at,
    )


def list_requests(session: Session, status: str | None, limit: int = 100) -> list[AccessRequest]:
    query = select(AccessRequest).order_by(col(AccessRequest.created_at).desc()).limit(limit)
    if status:
        query = query.where(col(AccessRequest.status) == status)
    return list(session.execute(query).scalars())
