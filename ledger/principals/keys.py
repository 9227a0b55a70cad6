"""API keys: how they are made, stored and resolved to a caller.

A key looks like ``ldg_<key id>_<secret>``; the id finds the row, the SHA-256 of the whole
key is compared in constant time, and an unknown id is compared against a dummy hash so a
miss takes as long as a hit. Only the hash is stored; the key is shown once.

``KeyCache`` remembers the callers of keys verified recently, for callers that
authenticate on every call at high rates (inference-time authorize): a hit costs a SHA-256
and a constant-time comparison, no database read. An entry holds only while the log's
``credentials`` mark is unchanged (every key rotation, principal disable or change of what
a principal is moves it, in the transaction that makes the change; ``ledger.provenance.log``),
so a revoked key is refused on the next call by every process, not after a timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
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
    # What the decision path weighs about the caller (NPU, GS and IS consents): as
    # recorded now.
    organisation_type: str = "unknown"
    region: str | None = None
    institution: str | None = None
    # The log's decision mark read when the caller was authenticated, where the two are
    # read together (authorize: one read of the marks per call).
    decision_mark: int | None = None

    def has(self, *roles: Role | str) -> bool:
        return bool(self.roles.intersection(str(r) for r in roles))


def new_api_key() -> tuple[str, str, bytes]:
    """Return (key id, full key shown once, hash stored)."""
    key_id = secrets.token_hex(8)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return key_id, key, hash_key(key)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _key_id(key: str) -> str:
    parts = key.split("_", 2)
    return parts[1] if len(parts) == 3 and parts[0] == KEY_PREFIX else ""


def resolve_key(session: Session, key: str) -> Caller:
    """Map an API key to its principal or raise Unauthenticated, in constant time per key."""
    key_id = _key_id(key)
    row = session.get(ApiKey, key_id) if key_id else None
    stored = row.key_hash if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(stored, hash_key(key))
    if row is None or not matches or row.revoked_at is not None:
        raise Unauthenticated("invalid or revoked API key")
    principal = session.get(Principal, row.principal_id)
    if principal is None or principal.disabled:
        raise Unauthenticated("this principal is disabled")
    roles = frozenset(principal.roles)
    return Caller(
        principal.id,
        principal.name,
        principal.kind,
        roles,
        key_id=row.id,
        organisation_type=principal.organisation_type,
        region=principal.region,
        institution=principal.institution,
    )


class KeyCache:
    """Callers of recently verified keys, by key id, each with the SHA-256 of its whole key
    and the ``credentials`` mark it was verified under.

    A hit needs the presented key's hash to match the stored one (compared in constant
    time, as ``resolve_key`` does) and the mark to be unchanged; anything else is a miss,
    which the caller answers with ``resolve_key``. Entries also lapse after ``seconds``
    (a bound on memory and on trust, not what revocation relies on). Whether a key id is
    cached shows in timing, but key ids are not secret (they are the key's visible part).
    """

    def __init__(self, seconds: float = 300.0, size: int = 10_000) -> None:
        self.seconds = seconds
        self.size = size
        self._entries: dict[str, tuple[bytes, Caller, int, float]] = {}

    def get(self, key: str, mark: int) -> Caller | None:
        digest = hash_key(key)
        entry = self._entries.get(_key_id(key))
        if entry is None:
            return None
        stored, caller, verified_at, until = entry
        if not hmac.compare_digest(stored, digest) or verified_at != mark:
            return None
        return caller if until > time.monotonic() else None

    def put(self, key: str, caller: Caller, mark: int) -> None:
        """Remember ``caller``, verified by ``resolve_key`` after ``mark`` was read."""
        if caller.key_id is None:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[caller.key_id] = (
            hash_key(key),
            caller,
            mark,
            time.monotonic() + self.seconds,
        )

    def clear(self) -> None:
        self._entries.clear()
