"""Mounting the console on the server: its routers, assets, error pages and headers.

Apart from ``pages`` (what every page shares), so that the page modules import ``pages``
and this module imports them, without a circle.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

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

    @app.middleware("http")
    async def _timing(request: Request, call_next: Any) -> Response:
        if not request.url.path.startswith(PREFIX):
            response: Response = await call_next(request)
            return response
        start = time.perf_counter()
        response = await call_next(request)
        elapsed = (time.perf_counter() - start) * 1000
        response.headers["Server-Timing"] = f"app;dur={elapsed:.1f}"
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'",
        )
        return response
