"""API keys: how they are made, stored and resolved to a caller.

A key looks like ``ldg_<key id>_<secret>``; the id finds the row, the SHA-256 of the whole
key is compared in constant time, and an unknown id is compared against a dummy hash so a
miss takes as long as a hit. Only the hash is stored; the key is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ledger.errors import Unauthenticated
from ledger.principals.models import ApiKey, Principal, Role

KEY_PREFIX = "ldg"
_DUMMY_HASH = hashlib.sha256(b"ledger-dummy").digest()


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of one request."""

    id: str
    name: str
    kind: str
    roles: frozenset[str]
    key_id: str | None = None  # the API key presented, when the caller presented one

    def has(self, *roles: Role | str) -> bool:
        return bool(self.roles.intersection(str(r) for r in roles))


def new_api_key() -> tuple[str, str, bytes]:
    """Return (key id, full key shown once, hash stored)."""
    key_id = secrets.token_hex(8)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return key_id, key, hash_key(key)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def resolve_key(session: Session, key: str) -> Caller:
    """Map an API key to its principal or raise Unauthenticated, in constant time per key."""
    parts = key.split("_", 2)
    key_id = parts[1] if len(parts) == 3 and parts[0] == KEY_PREFIX else ""
    row = session.get(ApiKey, key_id) if key_id else None
    stored = row.key_hash if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(stored, hash_key(key))
    if row is None or not matches or row.revoked_at is not None:
        raise Unauthenticated("invalid or revoked API key")
    principal = session.get(Principal, row.principal_id)
    if principal is None or principal.disabled:
        raise Unauthenticated("this principal is disabled")
    roles = frozenset(principal.roles)
    return Caller(principal.id, principal.name, principal.kind, roles, key_id=row.id)
