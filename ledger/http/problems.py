"""Errors as RFC 9457 problem+json: the one place where domain errors meet HTTP.

Domain services raise typed errors (``ledger.errors``), each knowing its status and problem
type; this module turns them, validation failures, framework errors and database failures
into one shape. The offending input is never echoed: it may carry patient data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import Conflict, InvalidJson, LedgerError, ServiceUnavailable
from ledger.http.request_log import mark_logged

log = logging.getLogger("ledger.http")

PROBLEM = "application/problem+json"


# Routes under a path prefix may answer errors in a format of their own (the FHIR routes
# answer OperationOutcome to FHIR clients); a renderer returning None leaves problem+json.
ErrorRenderer = Callable[[LedgerError, Request], JSONResponse | None]
_renderers: dict[str, ErrorRenderer] = {}


def render_errors_under(prefix: str, renderer: ErrorRenderer) -> None:
    _renderers[prefix] = renderer


def problem_response(error: LedgerError, request: Request) -> JSONResponse:
    for prefix, renderer in _renderers.items():
        if request.url.path.startswith(prefix):
            answer = renderer(error, request)
            if answer is not None:
                return answer
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(
        error.problem(instance=request.url.path),
        status_code=error.status,
        media_type=PROBLEM,
        headers=headers,
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The offending input is left out on purpose: it may carry patient data.
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    # A refusal (4xx) is logged as the request's one line (http/request_log.py); a fault
    # (5xx) adds its trace here.
    @app.exception_handler(LedgerError)
    async def _ledger(request: Request, exc: LedgerError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s on %s %s", exc.code, request.method, request.url.path, exc_info=exc)
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            # Normally refused earlier, by http/middleware.py: the same answer either way.
            return problem_response(InvalidJson("the body is not valid JSON"), request)
        err = LedgerError("the request does not match the schema", errors=errors)
        err.status, err.code, err.title = 422, "invalid-request", "Invalid request"
        return problem_response(err, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = LedgerError(str(exc.detail))
        err.status, err.code, err.title = (
            exc.status_code,
            f"http-{exc.status_code}",
            str(exc.detail),
        )
        return problem_response(err, request)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        return problem_response(
            Conflict("the change conflicts with existing data; nothing was written"), request
        )

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(ServiceUnavailable("the database is unavailable"), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        mark_logged(exc)  # Starlette re-raises it to the server: no second trace there
        err = LedgerError("an unexpected error occurred; it has been logged")
        err.status, err.code, err.title = 500, "internal", "Internal error"
        return problem_response(err, request)
