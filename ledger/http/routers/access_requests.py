"""HTTP routes of the decision path: access requests, reviews, grants."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query

from ledger.access import explain, request_views, service, visibility
from ledger.access.schemas import (
    AccessRequestCreate,
    AccessRequestPublic,
    ApproveResult,
    ImageOutcome,
    ReviewBody,
)
from ledger.http.deps import SessionDep, StateDep
from ledger.http.idempotency import run_once
from ledger.http.security import Oversight, Pipeline, PipelineOrOversight, Steward

router = APIRouter(prefix="/v1/access-requests", tags=["access requests"])


@router.post("", status_code=201, response_model=AccessRequestPublic)
def file_request(
    body: AccessRequestCreate,
    session: SessionDep,
    state: StateDep,
    caller: Pipeline,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> AccessRequestPublic:
    """File a request for a dataset and a purpose; it is evaluated at once, per image,
    against consent and policy. A dataset with no eligible image is a 422."""
    return run_once(
        session,
        principal_id=caller.id,
        key=idempotency_key,
        route="POST /v1/access-requests",
        payload=body.model_dump(mode="json"),
        model=AccessRequestPublic,
        action=lambda: request_views.public(
            session, service.create(session, state.context(), body, requester=caller.id)
        ),
    )


@router.get("", response_model=list[AccessRequestPublic])
def list_requests(
    session: SessionDep,
    caller: Oversight,
    status: Annotated[str | None, Query(description="e.g. evaluated (pending review)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AccessRequestPublic]:
    """Requests, newest first; ``status=evaluated`` is the stewards' queue."""
    return [
        request_views.public(session, r)
        for r in request_views.list_requests(session, status, limit)
    ]


@router.get("/{request_id}", response_model=AccessRequestPublic)
def get_request(
    request_id: str, session: SessionDep, caller: PipelineOrOversight
) -> AccessRequestPublic:
    request = request_views.get(session, request_id)
    visibility.ensure_visible(
        caller, request.requester_id, "this request belongs to another pipeline"
    )
    return request_views.public(session, request)


@router.post("/{request_id}/approve", response_model=ApproveResult)
def approve(
    request_id: str, body: ReviewBody, session: SessionDep, state: StateDep, caller: Steward
) -> ApproveResult:
    """Approve; the last required approval issues the grant (``grant`` is the compact JWS,
    ``grant_id`` its ``jti``). The filer cannot approve their own request."""
    return service.approve(
        session, state.context(), request_id, steward=caller.id, comment=body.comment
    )


@router.post("/{request_id}/reject", response_model=AccessRequestPublic)
def reject(
    request_id: str, body: ReviewBody, session: SessionDep, caller: Steward
) -> AccessRequestPublic:
    return request_views.public(
        session, service.reject(session, request_id, steward=caller.id, comment=body.comment)
    )


@router.get("/{request_id}/images/{image_id}", response_model=ImageOutcome)
def explain_image(
    request_id: str, image_id: str, session: SessionDep, caller: Oversight
) -> dict[str, Any]:
    """Why one image was or was not eligible: policy ids and the consents in force."""
    return explain.explain(session, request_id, image_id)


@router.get("/{request_id}/replay")
def replay(
    request_id: str, session: SessionDep, state: StateDep, caller: Oversight
) -> dict[str, Any]:
    """Re-evaluate as of the request's ``as_of``: same answer, or what changed."""
    return explain.replay(session, state.context(), request_id)
