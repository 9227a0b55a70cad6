"""The one function every service calls to record what it changed or decided.

``append`` runs inside the caller's transaction, so the entry commits or rolls back with
the change it describes (DESIGN invariant 3). Writers are serialised: on PostgreSQL by a
transaction-scoped advisory lock, on SQLite by the ``BEGIN IMMEDIATE`` write transaction
(see ``ledger.db``). ``seq`` is the primary key, so even a writer that bypassed the lock
could not fork the log: its insert would fail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.dbtypes import utcnow
from ledger.provenance.merkle import leaf_hash
from ledger.provenance.models import LogEntry

LOG_LOCK_ID = 0x1ED6E5  # advisory lock key for the log head on PostgreSQL
GENESIS_CHAIN = b"\x00" * 32
ENTRY_VERSION = 1


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(previous + leaf).digest()


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical JSON: one byte string per value, whoever serialises it."""
    return rfc8785.dumps(value)


def timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Appended:
    seq: int
    leaf_hash: bytes
    entry: bytes


def _lock_head(session: Session) -> tuple[int, bytes]:
    """Take the log lock (held to commit), then read the head.

    Two statements on purpose: under READ COMMITTED a statement's snapshot is taken when it
    starts, so a head read in the same statement as the lock could be stale.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOG_LOCK_ID})
    row = session.execute(
        select(col(LogEntry.seq), col(LogEntry.chain_hash))
        .order_by(col(LogEntry.seq).desc())
        .limit(1)
    ).first()
    if row is None:
        return -1, GENESIS_CHAIN
    return int(row[0]), bytes(row[1])


def append(
    session: Session, event_type: str, data: dict[str, Any], *, actor: str | None = None
) -> Appended:
    """Append one event; ``data`` must hold no personal data (use subject commitments)."""
    head, previous = _lock_head(session)
    seq = head + 1
    now = utcnow()
    entry = canonical(
        {
            "v": ENTRY_VERSION,
            "seq": seq,
            "time": timestamp(now),
            "type": event_type,
            "actor": actor,
            "data": data,
        }
    )
    leaf = leaf_hash(entry)
    session.execute(
        insert(LogEntry).values(
            seq=seq,
            event_type=event_type,
            entry=entry,
            leaf_hash=leaf,
            chain_hash=chain_hash(previous, leaf),
            recorded_at=now,
        )
    )
    return Appended(seq, leaf, entry)
