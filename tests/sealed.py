"""Files put into an object store as ingest leaves them (sealed under a data key at their
content address), for tests that render or release them without a database."""

from __future__ import annotations

import hashlib
import secrets

from ledger.access.archive import Prepared
from ledger.images.store import ObjectStore, seal


def sealed(store: ObjectStore, data: bytes, uid: str = "x", key: bytes | None = None) -> Prepared:
    """``data`` sealed into ``store``, under ``key`` or a fresh one, ready to render."""
    key = key or secrets.token_bytes(32)
    address = hashlib.sha256(data).hexdigest()
    store.put(address, seal(key, address, data))
    return Prepared(uid, address, key)
