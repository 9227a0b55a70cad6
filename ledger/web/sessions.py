"""Signing in to the console: an API key is exchanged for a session cookie.

Persons already hold API keys (hashed at rest, revocable, tied to roles), so the console
adds no second credential store. The key is checked in constant time; a wrong key costs
the caller a delay. The cookie is random, HttpOnly, SameSite=Strict, scoped to
``/console``; its hash is the session's key. Every form carries the session's CSRF token.
A session lasts while the key it was opened with does: revoking or rotating the key (or
disabling its principal) ends it, as it ends the key's access to the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from ledger.clock import utcnow
from ledger.errors import Unauthenticated
from ledger.principals.keys import Caller, resolve_key
from ledger.principals.models import ApiKey, Principal
from ledger.provenance import log
from ledger.web.models import WebSession

COOKIE = "ledger_console"
LOGIN_CSRF_COOKIE = "ledger_console_login"
WRONG_KEY_DELAY = 1.0


# Why there is no session, by code: the login page shows these texts and no other, so a
# link cannot make it display a notice of someone else's choosing.
NOTICES = {
    "sign-in": "Sign in to use the console.",
    "signed-out": "Signed out.",
    "ended": "This session has ended; sign in again.",
    "expired": "This session has expired; sign in again.",
    "key-revoked": "The key this session was opened with was revoked; sign in with your new key.",
    "disabled": "This principal is disabled.",
}


class NoSession(Unauthenticated):
    """No usable session; ``why`` is a key of ``NOTICES``."""

    def __init__(self, why: str) -> None:
        super().__init__(NOTICES[why])
        self.why = why


@dataclass(frozen=True)
class Viewer:
    caller: Caller
    csrf: str
    token_hash: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(session: Session, api_key: str, *, minutes: int) -> tuple[str, Caller]:
    """A new session for the key's principal: (cookie value, caller)."""
    caller = resolve_key(session, api_key.strip())
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=_hash(token),
            principal_id=caller.id,
            api_key_id=caller.key_id,
            csrf=secrets.token_urlsafe(32),
            expires_at=utcnow() + timedelta(minutes=minutes),
        )
    )
    session.flush()
    log.append(session, "console.signed_in", {"principal": caller.id}, actor=caller.id)
    return token, caller


def lookup(session: Session, token: str | None) -> Viewer:
    """The signed-in viewer, or NoSession saying why there is none (no, unknown, ended or
    expired session; its key revoked; its principal disabled)."""
    if not token:
        raise NoSession("sign-in")
    row = session.get(WebSession, _hash(token))
    if row is None or row.ended_at is not None:
        raise NoSession("ended")
    if row.expires_at <= utcnow():
        raise NoSession("expired")
    principal = session.get(Principal, row.principal_id)
    if principal is None or principal.disabled:
        raise NoSession("disabled")
    # Sessions from before keys were recorded (revision 0012) have none: they end too.
    key = session.get(ApiKey, row.api_key_id) if row.api_key_id else None
    if key is None or key.revoked_at is not None:
        raise NoSession("key-revoked")
    roles = frozenset(principal.roles)
    caller = Caller(principal.id, principal.name, principal.kind, roles, key_id=key.id)
    return Viewer(caller, row.csrf, row.token_hash)


def sign_out(session: Session, viewer: Viewer) -> None:
    row = session.get(WebSession, viewer.token_hash)
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()
        session.flush()


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
