"""A database connection an object keeps for itself: the authorizer reads its marks and
its cache misses on two of these rather than through sessions and the pool."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from sqlalchemy import Engine

from ledger import dialect


class OwnConnection:
    """A connection of the authorizer's own, in autocommit mode: each statement is its
    own snapshot, with no BEGIN, ROLLBACK or pool checkout round trip; its cursor is kept
    too (making one per statement cost a fifth of a cold call's read on PostgreSQL).
    ``lock`` is held around ``rows``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self._raw: Any = None
        self._cursor: Any = None

    def rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        for attempt in (1, 2):
            try:
                if self._cursor is None:
                    self._raw = self.engine.raw_connection()
                    if dialect.is_postgres(self.engine):
                        self._raw.driver_connection.autocommit = True
                    self._cursor = self._raw.cursor()
                self._cursor.execute(sql, params)
                return list(self._cursor.fetchall())
            except Exception:
                self.close()  # a broken connection: reconnect once, then give up
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        cursor, raw, self._cursor, self._raw = self._cursor, self._raw, None, None
        for done in (cursor, raw):
            if done is not None:
                with suppress(Exception):
                    done.close()
