"""What every console page shares: templates, the signed-in viewer, role checks, CSRF,
and rendering errors as pages instead of JSON."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from ledger.errors import LedgerError
from ledger.http.deps import SessionDep
from ledger.principals.models import Role
from ledger.web import charts
from ledger.web.sessions import COOKIE, NoSession, Viewer, csrf_ok, lookup

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["bars"] = charts.bars
templates.env.filters["has_any"] = lambda roles, *names: bool(set(roles) & set(names))
templates.env.filters["when"] = lambda v: f"{v:%Y-%m-%d %H:%M}" if v else ""
PREFIX = "/console"


class SignInRequired(Exception):
    """Redirect to the login page, which says ``why`` (a code of ``sessions.NOTICES``)."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why


class PageError(Exception):
    """A refusal shown as a page (status and message), with nothing changed."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def current_viewer(request: Request, session: SessionDep) -> Viewer:
    try:
        viewer = lookup(session, request.cookies.get(COOKIE))
    except NoSession as exc:
        raise SignInRequired(request.url.path, exc.why) from exc
    request.state.viewer = viewer
    return viewer


class PageRoles:
    """Page dependency admitting viewers with any of ``roles`` (as the API does)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(str(r) for r in roles)

    def __call__(self, viewer: Annotated[Viewer, Depends(current_viewer)]) -> Viewer:
        if not viewer.caller.roles & self.roles:
            raise PageError(
                403, f"This page needs one of the roles: {', '.join(sorted(self.roles))}."
            )
        return viewer


def page_roles(*roles: Role) -> PageRoles:
    return PageRoles(*roles)


AnyViewer = Annotated[Viewer, Depends(current_viewer)]


def check_csrf(viewer: Viewer, token: str | None) -> None:
    if not csrf_ok(viewer.csrf, token):
        raise PageError(403, "The form was not accepted (its security token did not match).")


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    return templates.TemplateResponse(
        request,
        template,
        {"viewer": viewer, "roles": viewer.caller.roles if viewer else frozenset(), **context},
        status_code=status_code,
    )


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def attempt(session: Any, action: Callable[[], Any]) -> LedgerError | None:
    """Run a change; a domain refusal is rolled back and returned for the page to show."""
    try:
        action()
    except LedgerError as exc:
        session.rollback()
        return exc
    return None
