"""Per-grant limits on concurrent downloads.

``Slots`` counts in the process: right for SQLite, where one server owns the database.
``SharedSlots`` counts across every server on one PostgreSQL database: a slot is a
session-level advisory lock on (grant, slot number), held on a connection of its own for
as long as the stream runs. PostgreSQL frees a lock when its connection ends, so a server
that is killed mid-stream gives its slots back with its connections; a counter kept in a
table would stay taken. ``for_engine`` picks the one that fits the database.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import suppress

from sqlalchemy import Connection, Engine, create_engine, func, select
from sqlalchemy.pool import NullPool

from ledger import dialect
from ledger.errors import TooManyRequests


class Slots:
    """At most ``limit`` archive streams per grant at once: a pipeline that opens more is
    told to wait (429) instead of starving everyone else's downloads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: dict[str, int] = {}
        self._lock = threading.Lock()

    def _refuse(self) -> TooManyRequests:
        return TooManyRequests(
            f"{self.limit} downloads of this grant are already running; retry later"
        )

    def take(self, grant_id: str) -> None:
        with self._lock:
            if self._busy.get(grant_id, 0) >= self.limit:
                raise self._refuse()
            self._busy[grant_id] = self._busy.get(grant_id, 0) + 1

    def give(self, grant_id: str) -> None:
        with self._lock:
            left = self._busy.get(grant_id, 1) - 1
            if left:
                self._busy[grant_id] = left
            else:
                self._busy.pop(grant_id, None)


def grant_lock_key(grant_id: str) -> int:
    """The grant's advisory lock key: 32 signed bits of a hash (the two-integer lock
    space, apart from the log's single-bigint lock)."""
    digest = hashlib.sha256(b"ledger-download-slots:" + grant_id.encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


class SharedSlots(Slots):
    """The same limit, counted by PostgreSQL across every server on the database.

    Each slot taken holds one connection (outside the request pool, so downloads never
    starve requests of connections); giving it back unlocks and closes it."""

    def __init__(self, limit: int, engine: Engine) -> None:
        super().__init__(limit)
        self._engine = create_engine(engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._held: dict[str, list[Connection]] = {}

    def take(self, grant_id: str) -> None:
        key = grant_lock_key(grant_id)
        conn = self._engine.connect()
        try:
            for slot in range(self.limit):
                if conn.execute(select(func.pg_try_advisory_lock(key, slot))).scalar():
                    with self._lock:
                        self._held.setdefault(grant_id, []).append(conn)
                    return
        except BaseException:
            conn.close()
            raise
        conn.close()
        raise self._refuse()

    def give(self, grant_id: str) -> None:
        with self._lock:
            held = self._held.get(grant_id)
            if not held:
                return
            conn = held.pop()
            if not held:
                del self._held[grant_id]
        with suppress(Exception):
            # Unlock before closing: a closed connection's backend frees its locks only
            # when it has exited, which the next take could otherwise beat.
            conn.execute(select(func.pg_advisory_unlock_all()))
        with suppress(Exception):
            conn.close()

    def held(self, grant_id: str) -> int:
        """Slots of the grant this process holds (for tests and diagnostics)."""
        with self._lock:
            return len(self._held.get(grant_id, ()))


def for_engine(limit: int, engine: Engine) -> Slots:
    """Slots shared by every server on PostgreSQL; per process on SQLite."""
    return SharedSlots(limit, engine) if dialect.is_postgres(engine) else Slots(limit)
