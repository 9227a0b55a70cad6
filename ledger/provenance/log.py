"""The one function every service calls to record what it changed or decided.

``append`` runs inside the caller's transaction, so the entry commits or rolls back with
the change it describes: every change and decision is logged with it. Writers are
serialised: on PostgreSQL by a transaction-scoped advisory lock, on SQLite by the
``BEGIN IMMEDIATE`` write transaction (see ``ledger.db``). ``seq`` is the primary key, so
even a writer that bypassed the lock could not fork the log: its insert would fail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger import dialect
from ledger.canonical import canonical
from ledger.clock import timestamp, utcnow
from ledger.dbtypes import table_of
from ledger.provenance.merkle import leaf_hash
from ledger.provenance.models import LogEntry
from ledger.provenance.verify import GENESIS_CHAIN

LOG_LOCK_ID = 0x1ED6E5  # advisory lock key for the log head on PostgreSQL
ENTRY_VERSION = 1


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(previous + leaf).digest()


# Event types whose entries can change a consent decision: appending one moves the
# ``decision_inputs`` mark, which decision caches compare (``ledger.access.authorize``).
DECISION_INPUTS = ("consent.", "subject.", "subjects.", "image.", "policy.")
DECISION_MARK = "decision_inputs"
# Event types that can change whom an API key authenticates as, or what is known of them
# (a key rotated, a principal created, disabled or changed): appending one moves the
# ``credentials`` mark, which the key cache compares (``ledger.principals.keys``).
CREDENTIAL_INPUTS = ("principal.",)
CREDENTIAL_MARK = "credentials"
INSERT_ENTRIES = (
    "INSERT INTO log_entries (seq, event_type, entry, leaf_hash, chain_hash, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_REFS = "INSERT INTO log_refs (ref, seq) VALUES (?, ?)"


# Keys of entry data that name something an auditor asks about, and the ref kind each
# gives. A key holding a list names several (e.g. the subjects of one release batch).
REF_KEYS = {
    "subject": "subject",
    "subjects": "subject",
    "principal": "principal",
    "consent_id": "consent",
    "image_id": "image",
    "dataset_id": "dataset",
    "request_id": "request",
    "grant_id": "grant",
    "grant_ids": "grant",
    "model_id": "model",
}


def refs_of(data: dict[str, Any]) -> set[str]:
    """``kind:value`` strings for what an entry is about, from its well-known keys."""
    refs: set[str] = set()
    for key in data.keys() & REF_KEYS.keys():
        kind, value = REF_KEYS[key], data[key]
        values = value if isinstance(value, list) else [value]
        refs.update(f"{kind}:{v}" for v in values if isinstance(v, str) and 0 < len(v) <= 150)
    return refs


@dataclass(frozen=True)
class Appended:
    seq: int
    leaf_hash: bytes
    entry: bytes


def lock_head(session: Session) -> tuple[int, bytes]:
    """Take the log lock (held to commit), then read the head.

    Two statements on purpose: under READ COMMITTED a statement's snapshot is taken when it
    starts, so a head read in the same statement as the lock could be stale.
    """
    if dialect.is_postgres(session):
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
    return append_many(session, [(event_type, data)], actor=actor)[0]


def append_many(
    session: Session,
    events: Sequence[tuple[str, dict[str, Any]]],
    *,
    actor: str | None = None,
    batch: int = 5_000,
) -> list[Appended]:
    """Append several events under one lock, as consecutive entries (bulk imports).

    Same entries as one ``append`` per event, at a fraction of the cost: one head read and
    batched inserts instead of a round trip per event.
    """
    if not events:
        return []
    head, previous = lock_head(session)
    now = utcnow()
    time = timestamp(now)
    # Straight to the driver: at bulk-import sizes SQLAlchemy's per-row parameter
    # processing costs more than the hashing. The one typed value is bound once.
    conn = session.connection()
    bind = table_of(LogEntry).c.recorded_at.type.bind_processor(conn.dialect)
    recorded_at = bind(now) if bind else now
    insert_entries = dialect.driver_sql(conn, INSERT_ENTRIES)
    insert_refs = dialect.driver_sql(conn, INSERT_REFS)
    done: list[Appended] = []
    rows: list[tuple[Any, ...]] = []
    refs: list[tuple[str, int]] = []
    for offset, (event_type, data) in enumerate(events):
        seq = head + 1 + offset
        entry = canonical(
            {
                "v": ENTRY_VERSION,
                "seq": seq,
                "time": time,
                "type": event_type,
                "actor": actor,
                "data": data,
            }
        )
        leaf = leaf_hash(entry)
        previous = chain_hash(previous, leaf)
        rows.append((seq, event_type, entry, leaf, previous, recorded_at))
        refs.extend((ref, seq) for ref in sorted(refs_of(data)))
        done.append(Appended(seq, leaf, entry))
    for i in range(0, len(rows), batch):
        conn.exec_driver_sql(insert_entries, rows[i : i + batch])
    for i in range(0, len(refs), batch):
        conn.exec_driver_sql(insert_refs, refs[i : i + batch])
    inputs = [
        a.seq for a, (t, _) in zip(done, events, strict=True) if t.startswith(DECISION_INPUTS)
    ]
    if inputs:
        _mark(conn, DECISION_MARK, max(inputs))
    credentials = [
        a.seq for a, (t, _) in zip(done, events, strict=True) if t.startswith(CREDENTIAL_INPUTS)
    ]
    if credentials:
        _mark(conn, CREDENTIAL_MARK, max(credentials))
    return done


MARK_UPDATE = text("UPDATE log_marks SET seq = :seq WHERE name = :name")
MARK_INSERT = text("INSERT INTO log_marks (name, seq) VALUES (:name, :seq)")
MARK_SELECT = "SELECT seq FROM log_marks WHERE name = ?"
# Both marks in one round trip (authorize reads them on every call).
MARKS_SELECT = "SELECT name, seq FROM log_marks WHERE name IN (?, ?)"


def _mark(conn: Any, name: str, seq: int) -> None:
    if conn.execute(MARK_UPDATE, {"seq": seq, "name": name}).rowcount == 0:
        conn.execute(MARK_INSERT, {"seq": seq, "name": name})
