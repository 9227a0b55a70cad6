"""The ledger's one notion of now, and how an instant is written.

Every stored and logged instant is aware UTC; entries and tokens write it with microsecond
precision and a ``Z`` so that a replay produces the same bytes. Pure: no database import,
so the SDK and token verification can use it.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["timestamp", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
