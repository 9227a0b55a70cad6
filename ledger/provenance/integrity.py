"""Verification of the live database log: the same checks as an offline bundle, plus the
stored leaf and chain hashes, so an edit is pinned to its entry even when no checkpoint
covers it yet."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger import dialect
from ledger.provenance.models import CheckpointRecord
from ledger.provenance.note import Verifier
from ledger.provenance.verify import Report, SignedCheckpoint, verify_entries

BATCH = 20_000


ROWS_SQL = "SELECT seq, entry, leaf_hash, chain_hash FROM log_entries ORDER BY seq"


def _rows(session: Session) -> Iterator[tuple[int, bytes, bytes | None, bytes | None]]:
    """Stream rows through the driver's own cursor: SQLAlchemy's result processing would
    cost more than the hashing on a million-entry log. PostgreSQL gets a server-side
    cursor so memory stays flat."""
    dbapi = session.connection().connection
    postgres = dialect.is_postgres(session)
    cursor = dbapi.cursor(name="ledger_verify", binary=True) if postgres else dbapi.cursor()
    try:
        cursor.execute(ROWS_SQL)
        while batch := cursor.fetchmany(BATCH):
            for seq, entry, leaf, chain in batch:
                yield seq, bytes(entry), bytes(leaf), bytes(chain)
    finally:
        cursor.close()


def stored_checkpoints(session: Session) -> list[SignedCheckpoint]:
    records = session.execute(select(CheckpointRecord).order_by(col(CheckpointRecord.size)))
    return [
        SignedCheckpoint(r.note, f"checkpoint {r.size}", r.size, bytes(r.root_hash))
        for r in records.scalars()
    ]


def verify_database(
    session: Session,
    keys: list[Verifier],
    origin: str,
    witnessed: Sequence[SignedCheckpoint] = (),
) -> Report:
    """Recompute chain and tree from every entry; check stored and witnessed checkpoints."""
    checkpoints = [*stored_checkpoints(session), *witnessed]
    return verify_entries(_rows(session), checkpoints, keys, origin=origin)
