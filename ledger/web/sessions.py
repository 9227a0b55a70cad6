"""Signing in to the console: an API key is exchanged for a session cookie.

Persons already hold API keys (hashed at rest, revocable, tied to roles), so the console
adds no second credential store. The key is checked in constant time; a wrong key costs
the caller a delay. The cookie is random, HttpOnly, SameSite=Strict, scoped to
``/console``; its hash is the session's key. Every form carries the session's CSRF token.
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
from ledger.principals.models import Principal
from ledger.provenance import log
from ledger.web.models import WebSession

COOKIE = "ledger_console"
LOGIN_CSRF_COOKIE = "ledger_console_login"
WRONG_KEY_DELAY = 1.0


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
            csrf=secrets.token_urlsafe(32),
            expires_at=utcnow() + timedelta(minutes=minutes),
        )
    )
    session.flush()
    log.append(session, "console.signed_in", {"principal": caller.id}, actor=caller.id)
    return token, caller


def lookup(session: Session, token: str | None) -> Viewer:
    """The signed-in viewer, or Unauthenticated (no, unknown, ended or expired session)."""
    if not token:
        raise Unauthenticated("sign in to use the console")
    row = session.get(WebSession, _hash(token))
    if row is None or row.ended_at is not None:
        raise Unauthenticated("this session has ended; sign in again")
    if row.expires_at <= utcnow():
        raise Unauthenticated("this session has expired; sign in again")
    principal = session.get(Principal, row.principal_id)
    if principal is None or principal.disabled:
        raise Unauthenticated("this principal is disabled")
    caller = Caller(principal.id, principal.name, principal.kind, frozenset(principal.roles))
    return Viewer(caller, row.csrf, row.token_hash)


def sign_out(session: Session, viewer: Viewer) -> None:
    row = session.get(WebSession, viewer.token_hash)
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()
        session.flush()


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
