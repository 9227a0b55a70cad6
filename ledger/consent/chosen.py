"""Which consent versions are in force, chosen from versions already read: the pure form
of ``ledger.consent.in_force``'s selection, for a caller that reads a study's images and
its subjects' consent versions in one statement (inference authorize on a cache miss).

The rules are ``in_force``'s: per consent, the highest version recorded by the instant is
its state then; that version counts if the read flagged it in force (active, and inside
its ``valid_from``/``valid_until`` window: the flag is computed in SQL by the same test)
and, for a permit carrying TS, its time limit has not passed (``time_limits.passed``).
A withdrawal is a version with status ``withdrawn``, so it ends its consent here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ledger.consent import time_limits

Row = tuple[str, int, str, int, str]  # consent, version, subject, in force, terms key
# ... and the version's valid_from (a datetime, or the ISO text SQLite's driver gives)
Versioned = tuple[str, int, str, int, str, Any]


def _instant(value: Any) -> datetime:
    """A driver's valid_from as a datetime (``time_limits.passed`` reads naive as UTC)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def in_force(
    versions: Iterable[Versioned],
    as_of: datetime,
    limits_of: Callable[[str], tuple[str, ...]],
) -> list[Row]:
    """The versions in force at ``as_of`` among ``versions`` (every version of the
    consents concerned recorded by ``as_of``); ``limits_of`` gives a terms key's TS
    modifiers (``time_limits.of_terms``)."""
    latest: dict[str, Versioned] = {}
    for v in versions:
        seen = latest.get(v[0])
        if seen is None or seen[1] < v[1]:
            latest[v[0]] = v
    out: list[Row] = []
    for v in latest.values():
        if not v[3]:
            continue
        limits = limits_of(v[4])
        if limits and time_limits.passed(limits, _instant(v[5]), as_of):
            continue
        out.append((v[0], v[1], v[2], v[3], v[4]))
    return out
