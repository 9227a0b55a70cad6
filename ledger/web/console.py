"""Mounting the console on the server: its routers, assets, error pages and headers.

Apart from ``pages`` (what every page shares), so that the page modules import ``pages``
and this module imports them, without a circle.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.web import auditor, registrar, steward
from ledger.web import auth as auth_pages
from ledger.web.pages import HERE, PREFIX, PageError, SignInRequired, render, see_other


def install(app: FastAPI) -> None:
    """Mount the console's routers, assets and error pages on ``app``."""
    for module in (auth_pages, steward, registrar, auditor):
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return see_other(f"{PREFIX}/login?next={quote(exc.path)}&why={exc.why}")

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        return render(request, "error.html", exc.status, message=exc.message)

    app.add_middleware(ConsoleHeaders)


CSP = (
    "default-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'"
)


class ConsoleHeaders:
    """Server-Timing, no caching and the content security policy on console responses.

    Plain ASGI, so API requests pass straight through: Starlette's ``@app.middleware``
    ran every request of the server (authorize calls included) through an extra task and
    a response stream, a fifth of a small request's CPU time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
                headers.setdefault("Cache-Control", "no-store")
                headers.setdefault("Content-Security-Policy", CSP)
            await send(message)

        await self.app(scope, receive, with_headers)
