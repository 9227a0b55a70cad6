"""The server log: one line per request, and a fault's trace once.

Each request gets one line on the ``ledger.access`` logger: method, path, status, for a
refusal the problem's code, and the time taken. Never the query string (a FHIR search or a
lookup may carry a patient identifier), a header or a body. A refused request (4xx) is
that one line; a fault (5xx) is that line plus the trace ``http/problems.py`` logs.

``ledger serve`` turns uvicorn's own access log off (its request line includes the query
string) and drops uvicorn's second copy of a trace the ledger has already logged (Starlette
re-raises an unhandled error to the server after answering 500).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from contextlib import suppress
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("ledger.access")

PROBLEM_PREFIX = "urn:ledger:problem:"
_LOGGED = "_ledger_logged"


def mark_logged(exc: BaseException) -> None:
    """Note that ``exc``'s trace is in the log, so the server does not print it again."""
    with suppress(AttributeError):  # a type without a __dict__: logged twice, no harm
        setattr(exc, _LOGGED, True)


class AlreadyLogged(logging.Filter):
    """Drops a log record whose exception the ledger has already logged with its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, _LOGGED, False)


def _problem_code(body: bytes) -> str | None:
    try:
        kind = json.loads(body).get("type", "")
    except (ValueError, AttributeError):
        return None
    return kind.removeprefix(PROBLEM_PREFIX) if isinstance(kind, str) else None


class RequestLog:
    """ASGI middleware writing the request's line once the response is sent (or failed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # Read now: routing rewrites the scope's paths on the way in (mounts).
        line = (str(scope.get("method", "")), str(scope.get("path", "")))
        status = 0
        problem: bytearray | None = None

        async def watching_send(message: Message) -> None:
            nonlocal status, problem
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = dict(message.get("headers") or [])
                if headers.get(b"content-type", b"").startswith(b"application/problem+json"):
                    problem = bytearray()
            elif message["type"] == "http.response.body" and problem is not None:
                problem += message.get("body", b"")[: max(0, 8192 - len(problem))]  # small
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception:
            _write(line, status or 500, "internal", start)
            raise
        code = _problem_code(bytes(problem)) if problem else None
        _write(line, status, code, start)


def _write(line: tuple[str, str], status: int, code: str | None, start: float) -> None:
    elapsed = (time.perf_counter() - start) * 1000
    level = logging.ERROR if status >= 500 else logging.INFO
    method, path = line
    if code:
        log.log(level, "%s %s %d %s %.1fms", method, path, status, code, elapsed)
    else:
        log.log(level, "%s %s %d %.1fms", method, path, status, elapsed)


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging, with the ledger's loggers beside its own and its duplicate
    traces filtered (pass ``access_log=False`` too: the ledger writes the request line)."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["already_logged"] = {"()": f"{__name__}.AlreadyLogged"}
    config["loggers"]["uvicorn.error"]["filters"] = ["already_logged"]
    config["loggers"]["ledger"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
