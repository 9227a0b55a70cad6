"""ASGI middleware at the HTTP edge, before any handler runs: request size limits enforced
while streaming, and the input no route can take (NUL anywhere, malformed JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.errors import InvalidInput, InvalidJson, LedgerError, PayloadTooLarge
from ledger.limits import MAX_INT, MAX_JSON_DEPTH, json_too_deep

# The routes that take uploads (DICOM, CSV) rather than JSON: only these get the upload
# limit, whatever a request's Content-Type says. tests/http/test_hardening.py checks the
# list against the request bodies the OpenAPI document declares.
UPLOAD_PATHS = frozenset({"/v1/images", "/v1/consents/import", "/v1/dicomweb/studies"})


class _TooLarge(BaseException):
    """Raised from ``receive``; a BaseException so no handler in between turns it into 400."""


class BodyLimit:
    """Refuse bodies over the limit for their route with 413 problem+json: the upload limit
    on the upload routes, the JSON limit everywhere else.

    Counting the streamed bytes, not trusting Content-Length, stops a chunked upload
    from filling memory.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        json_limit: int,
        upload_limit: int,
        upload_paths: Iterable[str] = UPLOAD_PATHS,
    ) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit
        self.upload_paths = frozenset(upload_paths)

    def _limit(self, scope: Scope) -> int:
        return self.upload_limit if scope.get("path") in self.upload_paths else self.json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reject(send, limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reject(send, limit)


class InputGuard:
    """Refuse with 422 problem+json what no route can take, the same on every database:

    * NUL in the path, the query or any header (PostgreSQL cannot store it; no identifier,
      name or text needs it);
    * a JSON body (``application/json``, ``application/*+json``, or no Content-Type, as
      FastAPI reads them) that is not UTF-8, not JSON, nests deeper than
      ``MAX_JSON_DEPTH`` (checked on the raw bytes, before parsing): code ``invalid-json``;
    * a JSON string holding NUL or a lone surrogate, or an integer beyond 64 bits;
    * a form body holding NUL.

    Place it inside ``BodyLimit``, which bounds the body it reads.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = _request_line_error(scope)
        kind = _body_kind(scope) if error is None else None
        if kind is not None:
            body, receive = await _buffered(receive)
            if body:
                error = _json_error(body, scope) if kind == "json" else _form_error(body)
        if error is not None:
            await send_problem(send, error)  # problem+json on every route, FHIR's too
            return
        await self.app(scope, receive, send)


def _request_line_error(scope: Scope) -> LedgerError | None:
    if "\x00" in scope.get("path", ""):
        return InvalidInput("the path must not contain NUL (%00)")
    query = scope.get("query_string", b"")
    if b"\x00" in query or b"%00" in query:
        return InvalidInput("the query must not contain NUL (%00)")
    for name, value in scope.get("headers") or []:
        if b"\x00" in value:
            return InvalidInput(f"header {name.decode('latin-1')} must not contain NUL")
    return None


def _content_type(scope: Scope) -> tuple[str, dict[str, str]]:
    raw = b""
    for name, value in scope.get("headers") or []:
        if name == b"content-type":
            raw = value
    media, *params = raw.decode("latin-1").split(";")
    options = {}
    for param in params:
        key, _, value = param.partition("=")
        options[key.strip().lower()] = value.strip().strip('"').lower()
    return media.strip().lower(), options


def _body_kind(scope: Scope) -> str | None:
    if scope.get("method") in ("GET", "HEAD", "OPTIONS") or scope.get("path") in UPLOAD_PATHS:
        return None  # upload routes read their own bodies and name the media type they need
    media, _ = _content_type(scope)
    main, _, sub = media.partition("/")
    if not media or (main == "application" and (sub == "json" or sub.endswith("+json"))):
        return "json"
    if media == "application/x-www-form-urlencoded":
        return "form"
    return None


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a ``receive`` that replays it to the app."""
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_error(body: bytes, scope: Scope) -> LedgerError | None:
    _, params = _content_type(scope)
    if params.get("charset", "utf-8") not in ("utf-8", "utf8"):
        return InvalidJson("send JSON as UTF-8 (RFC 8259); no other charset is accepted")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidJson("the body is not UTF-8; JSON must be sent as UTF-8")
    if json_too_deep(body):
        return InvalidJson(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return InvalidJson("the body is not valid JSON")
    return _value_error(value)


def _value_error(value: Any) -> LedgerError | None:
    """NUL or a lone surrogate in any string (keys too), or an integer beyond 64 bits."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return InvalidInput("text must not contain NUL (\\u0000)")
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return InvalidInput("text must not contain a lone surrogate (\\ud800-\\udfff)")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
            return InvalidInput(f"integers must lie within ±{MAX_INT} (64 bits)")
    return None


def _form_error(body: bytes) -> LedgerError | None:
    if b"\x00" in body or b"%00" in body:
        return InvalidInput("form fields must not contain NUL (%00)")
    return None


async def send_problem(send: Send, error: LedgerError) -> None:
    """Answer ``error`` as problem+json from middleware (no route, no input echoed)."""
    body = json.dumps(error.problem()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _reject(send: Send, limit: int) -> None:
    await send_problem(send, PayloadTooLarge(f"request body exceeds the limit of {limit} bytes"))
