"""One typed error hierarchy; the API maps it to RFC 9457 problem+json in one place.

Services raise these instead of HTTP exceptions so the same rule gives the same message
through the API, the CLI and the Python client.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Base of every error a user can cause; never a 500."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:ledger:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class InvalidInput(LedgerError):
    status, code, title = 422, "invalid-input", "Invalid input"


class InvalidJson(InvalidInput):
    """A body that is not UTF-8 JSON, or nests too deep to parse: one answer for all."""

    code, title = "invalid-json", "Invalid JSON"


class Unauthenticated(LedgerError):
    status, code, title = 401, "unauthenticated", "Authentication required"


class Forbidden(LedgerError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(LedgerError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(LedgerError):
    status, code, title = 409, "conflict", "Conflict"


class Gone(LedgerError):
    status, code, title = 410, "gone", "No longer available"


class PayloadTooLarge(LedgerError):
    status, code, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(LedgerError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class TooManyRequests(LedgerError):
    status, code, title = 429, "too-many-requests", "Too many requests"


class ServiceUnavailable(LedgerError):
    status, code, title = 503, "unavailable", "Service unavailable"


class SchemaNotCurrent(ServiceUnavailable):
    """The database is reachable but not migrated to the code's head revision."""

    code, title = "schema-not-current", "Database not migrated"
