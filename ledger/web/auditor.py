"""Auditor pages: log status and verification, lineage of a subject, grant or model,
releases after withdrawal, flagged models, PROV-JSON downloads."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from ledger.audit import queries as audit
from ledger.audit.prov_export import prov_json
from ledger.clock import utcnow
from ledger.http.deps import SessionDep, StateDep
from ledger.principals.models import Role
from ledger.provenance import checkpoints, integrity
from ledger.provenance.models import LogEntry
from ledger.registry import service as registry
from ledger.web.pages import PREFIX, PageError, check_csrf, page_roles, render, see_other
from ledger.web.sessions import Viewer

router = APIRouter(prefix=f"{PREFIX}/audit", include_in_schema=False)

Auditor = Annotated[Viewer, Depends(page_roles(Role.auditor, Role.admin))]
KINDS = ("subject", "grant", "model", "dataset")

# The last verification (what the status page shows) is kept on the app, in memory on
# purpose: it is a convenience, the evidence is the log and its signed checkpoints.
LAST_VERIFICATION = "console_last_verification"


@router.get("", response_class=HTMLResponse)
def status(request: Request, session: SessionDep, state: StateDep, viewer: Auditor) -> HTMLResponse:
    size = session.execute(select(func.count()).select_from(LogEntry)).scalar_one()
    latest = checkpoints.latest(session)
    violations, checked = audit.releases_without_consent(session)
    models = [registry.describe(session, state.policies, r) for r in registry.list_models(session)]
    return render(
        request,
        "audit.html",
        size=size,
        checkpoint=latest,
        verification=getattr(request.app.state, LAST_VERIFICATION, None),
        violations=violations,
        checked=checked,
        models=models,
        kinds=KINDS,
    )


@router.post("/verify")
def verify(
    request: Request,
    session: SessionDep,
    state: StateDep,
    viewer: Auditor,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Recompute the chain and the tree from every entry and check every checkpoint."""
    check_csrf(viewer, csrf)
    keys = checkpoints.verifiers(state.keys, state.settings.log_origin)
    report = integrity.verify_database(session, keys, state.settings.log_origin)
    result = {
        "at": utcnow(),
        "ok": report.ok,
        "entries": report.entries,
        "checkpoints": report.checkpoints_checked,
        "first_bad_index": report.first_bad_index,
        "faults": [str(f) for f in report.faults[:5]],
    }
    setattr(request.app.state, LAST_VERIFICATION, result)
    return see_other(f"{PREFIX}/audit")


def _lineage(session: SessionDep, kind: str, item_id: str) -> audit.Lineage:
    if kind not in KINDS or not item_id.strip():
        raise PageError(422, f"Choose one of {', '.join(KINDS)} and give its id.")
    return audit.lineage(session, kind, item_id.strip())


@router.get("/lineage", response_class=HTMLResponse)
def lineage(
    request: Request, session: SessionDep, viewer: Auditor, kind: str = "subject", id: str = ""
) -> HTMLResponse:
    found = _lineage(session, kind, id)
    return render(request, "lineage.html", kind=kind, item_id=id.strip(), lineage=found)


@router.get("/lineage.prov.json")
def prov(
    session: SessionDep, state: StateDep, viewer: Auditor, kind: str = "subject", id: str = ""
) -> Response:
    document = prov_json(_lineage(session, kind, id), state.settings.log_origin)
    return Response(
        json.dumps(document, indent=1, default=str),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{kind}-lineage.prov.json"'},
    )
