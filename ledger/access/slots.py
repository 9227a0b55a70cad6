"""Per-grant limits on concurrent downloads (one process; each worker keeps its own)."""

from __future__ import annotations

import threading

from ledger.errors import TooManyRequests


class Slots:
    """At most ``limit`` archive streams per grant at once: a pipeline that opens more is
    told to wait (429) instead of starving everyone else's downloads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, grant_id: str) -> None:
        with self._lock:
            if self._busy.get(grant_id, 0) >= self.limit:
                raise TooManyRequests(
                    f"{self.limit} downloads of this grant are already running; retry later"
                )
            self._busy[grant_id] = self._busy.get(grant_id, 0) + 1

    def give(self, grant_id: str) -> None:
        with self._lock:
            left = self._busy.get(grant_id, 1) - 1
            if left:
                self._busy[grant_id] = left
            else:
                self._busy.pop(grant_id, None)
