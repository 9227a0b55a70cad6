"""Steward pages: the queue, one request with its composition report, approve or reject,
and active grants with revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlmodel import col

from ledger.access import request_views, revocations, service
from ledger.access.models import Grant
from ledger.http.deps import SessionDep, StateDep
from ledger.principals.models import Principal, Role
from ledger.web.pages import PREFIX, attempt, check_csrf, page_roles, render, see_other
from ledger.web.sessions import Viewer

router = APIRouter(prefix=PREFIX, include_in_schema=False)

Steward = Annotated[Viewer, Depends(page_roles(Role.steward))]
Overseer = Annotated[Viewer, Depends(page_roles(Role.steward, Role.auditor, Role.admin))]
Comment = Annotated[str, Form(min_length=1, max_length=2000)]
Csrf = Annotated[str, Form(max_length=100)]


@router.get("/requests", response_class=HTMLResponse)
def queue(request: Request, session: SessionDep, viewer: Overseer) -> HTMLResponse:
    pending = [
        request_views.public(session, r) for r in request_views.list_requests(session, "evaluated")
    ]
    recent = [
        request_views.public(session, r)
        for r in request_views.list_requests(session, None, limit=20)
        if r.status != "evaluated"
    ]
    return render(request, "requests.html", pending=pending, recent=recent)


def _request_page(
    request: Request,
    session: SessionDep,
    request_id: str,
    status: int = 200,
    error: str | None = None,
    done: str | None = None,
) -> HTMLResponse:
    item = request_views.public(session, request_views.get(session, request_id))
    requester = session.get(Principal, item.requester_id)
    approvals = sum(1 for r in item.reviews if r.verdict == "approve")
    return render(
        request,
        "request.html",
        status,
        item=item,
        requester=requester.name if requester else item.requester_id,
        approvals=approvals,
        error=error,
        done=done,
    )


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(
    request: Request,
    request_id: str,
    session: SessionDep,
    viewer: Overseer,
    done: str | None = None,
) -> HTMLResponse:
    # Only the outcomes this console redirects with: a link cannot make it say anything else.
    shown = done if done in ("approved", "rejected") else None
    return _request_page(request, session, request_id, done=shown)


@router.post("/requests/{request_id}/approve")
def approve(
    request: Request,
    request_id: str,
    session: SessionDep,
    state: StateDep,
    viewer: Steward,
    comment: Comment,
    csrf: Csrf = "",
) -> Response:
    check_csrf(viewer, csrf)
    ctx = state.context()
    refused = attempt(
        session,
        lambda: service.approve(
            session, ctx, request_id, steward=viewer.caller.id, comment=comment
        ),
    )
    if refused is not None:
        return _request_page(request, session, request_id, refused.status, refused.detail)
    return see_other(f"{PREFIX}/requests/{request_id}?done=approved")


@router.post("/requests/{request_id}/reject")
def reject(
    request: Request,
    request_id: str,
    session: SessionDep,
    viewer: Steward,
    comment: Comment,
    csrf: Csrf = "",
) -> Response:
    check_csrf(viewer, csrf)
    refused = attempt(
        session,
        lambda: service.reject(session, request_id, steward=viewer.caller.id, comment=comment),
    )
    if refused is not None:
        return _request_page(request, session, request_id, refused.status, refused.detail)
    return see_other(f"{PREFIX}/requests/{request_id}?done=rejected")


def _grants_page(
    request: Request, session: SessionDep, status: int = 200, error: str | None = None
) -> HTMLResponse:
    rows = session.execute(
        select(Grant, col(Principal.name))
        .join(Principal, col(Principal.id) == col(Grant.pipeline_id))
        .order_by(col(Grant.issued_at).desc())
        .limit(200)
    ).all()
    return render(
        request,
        "grants.html",
        status,
        grants=rows,
        obligations=request_views.obligations_of(session, [g.request_id for g, _ in rows]),
        error=error,
    )


@router.get("/grants", response_class=HTMLResponse)
def grants(request: Request, session: SessionDep, viewer: Overseer) -> HTMLResponse:
    return _grants_page(request, session)


@router.post("/grants/{grant_id}/revoke")
def revoke(
    request: Request,
    grant_id: str,
    session: SessionDep,
    viewer: Steward,
    reason: Comment,
    csrf: Csrf = "",
) -> Response:
    check_csrf(viewer, csrf)
    refused = attempt(
        session,
        lambda: revocations.revoke(session, grant_id, reason=reason, actor=viewer.caller.id),
    )
    if refused is not None:
        return _grants_page(request, session, refused.status, refused.detail)
    return see_other(f"{PREFIX}/grants")
