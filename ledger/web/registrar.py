"""Registrar pages: find a subject by issuer and patient id, read the consent timeline (each
version's purposes, diseases and DUO modifiers with their labels: ``consent_terms``),
record a withdrawal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from ledger.consent import service, subjects
from ledger.consent.models import Subject
from ledger.consent.schemas import WithdrawBody
from ledger.http.deps import SessionDep, StateDep
from ledger.principals.models import Role
from ledger.web import consent_terms
from ledger.web.pages import PREFIX, PageError, attempt, check_csrf, page_roles, render, see_other
from ledger.web.sessions import Viewer

router = APIRouter(prefix=PREFIX, include_in_schema=False)

Registrar = Annotated[Viewer, Depends(page_roles(Role.registrar))]
Reader = Annotated[
    Viewer, Depends(page_roles(Role.registrar, Role.steward, Role.auditor, Role.admin))
]
Csrf = Annotated[str, Form(max_length=100)]


@router.get("/subjects", response_class=HTMLResponse)
def find_form(request: Request, viewer: Registrar) -> HTMLResponse:
    return render(request, "subject_find.html", message=None)


@router.post("/subjects", response_class=HTMLResponse)
def find(
    request: Request,
    session: SessionDep,
    state: StateDep,
    viewer: Registrar,
    issuer: Annotated[str, Form(min_length=1, max_length=200)],
    patient_id: Annotated[str, Form(min_length=1, max_length=200)],
    csrf: Csrf = "",
) -> Response:
    """A POST, so the patient id never appears in a URL, a history or an access log."""
    check_csrf(viewer, csrf)
    subject = subjects.find(session, state.keys.pseudonym_key, issuer.strip(), patient_id.strip())
    if subject is None:
        return render(
            request, "subject_find.html", 404, message="No subject with this issuer and id."
        )
    return see_other(f"{PREFIX}/subjects/{subject.id}")


def _subject_page(
    request: Request, session: SessionDep, subject_id: str, status: int = 200, error: str = ""
) -> HTMLResponse:
    subject = session.get(Subject, subject_id)
    if subject is None:
        raise PageError(404, "No such subject.")
    versions = sorted(
        service.subject_consents(session, subject_id), key=lambda v: (v.recorded_at, v.version)
    )
    latest = {v.consent_id: v for v in versions}
    return render(
        request,
        "subject.html",
        status,
        subject=subject,
        versions=versions,
        terms={
            (v.consent_id, v.version): (
                consent_terms.purpose_terms(v.purposes),
                consent_terms.modifier_terms(v.modifiers),
            )
            for v in versions
        },
        active=[v for v in latest.values() if v.status == "active"],
        error=error,
    )


@router.get("/subjects/{subject_id}", response_class=HTMLResponse)
def subject_page(
    request: Request, subject_id: str, session: SessionDep, viewer: Reader
) -> HTMLResponse:
    return _subject_page(request, session, subject_id)


@router.post("/consents/{consent_id}/withdraw")
def withdraw(
    request: Request,
    consent_id: str,
    session: SessionDep,
    viewer: Registrar,
    subject_id: Annotated[str, Form(max_length=64)],
    reason: Annotated[str, Form(min_length=1, max_length=500)],
    csrf: Csrf = "",
) -> Response:
    check_csrf(viewer, csrf)
    refused = attempt(
        session,
        lambda: service.withdraw(
            session,
            consent_id,
            WithdrawBody(reason=reason),
            actor=viewer.caller.id,
            subject_id=subject_id,
        ),
    )
    if refused is not None:
        return _subject_page(request, session, subject_id, refused.status, refused.detail)
    return see_other(f"{PREFIX}/subjects/{subject_id}")
