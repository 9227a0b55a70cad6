"""Sign in, sign out, and the home page that lists what the viewer's roles may do."""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from ledger.errors import Unauthenticated
from ledger.http.deps import SessionDep, StateDep
from ledger.web.pages import PREFIX, AnyViewer, check_csrf, render, see_other
from ledger.web.sessions import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    NOTICES,
    WRONG_KEY_DELAY,
    csrf_ok,
    sign_in,
    sign_out,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a console path: never an open redirect to another site."""
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//"):
        return target
    return f"{PREFIX}/"


def _cookie(request: Request, response: Response, name: str, value: str, seconds: int) -> None:
    """Console cookies: script cannot read them, other sites cannot send them."""
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
        max_age=seconds,
    )


def _login_page(
    request: Request, status: int, message: str | None, next_: str | None
) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(
        request, "login.html", status, message=message, next=_safe_next(next_), csrf=token
    )
    _cookie(request, response, LOGIN_CSRF_COOKIE, token, 1800)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request,
    next_: Annotated[str | None, Query(alias="next")] = None,
    why: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    """The sign-in form; ``why`` names a known notice (any other text is not shown)."""
    return _login_page(request, 200, NOTICES.get(why or ""), next_)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    state: StateDep,
    api_key: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=100)] = "",
    next_: Annotated[str | None, Form(alias="next")] = None,
) -> Response:
    """Exchange an API key for a session; a wrong key answers after a delay."""
    if not csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf):
        return _login_page(request, 403, "The form expired; please sign in again.", next_)

    def attempt() -> str:
        with state.write_sessions() as session:
            token, _ = sign_in(session, api_key, minutes=state.settings.console_session_minutes)
            session.commit()
        return token

    try:
        token = await run_in_threadpool(attempt)
    except Unauthenticated:
        await asyncio.sleep(WRONG_KEY_DELAY)
        return _login_page(request, 401, "That key was not accepted.", next_)
    response = see_other(_safe_next(next_))
    _cookie(request, response, COOKIE, token, state.settings.console_session_minutes * 60)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
def logout(
    session: SessionDep, viewer: AnyViewer, csrf: Annotated[str, Form(max_length=100)] = ""
) -> Response:
    check_csrf(viewer, csrf)
    sign_out(session, viewer)
    response = see_other(f"{PREFIX}/login?why=signed-out")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, viewer: AnyViewer) -> HTMLResponse:
    return render(request, "home.html")
