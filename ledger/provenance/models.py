"""Log tables. ``seq`` is the RFC 9162 leaf index (0-based), so the Merkle tree over
``leaf_hash`` in ``seq`` order is the transparency log; ``chain_hash`` links each entry to
the previous one so a gap or a reordering shows without any checkpoint."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, LargeBinary, String
from sqlmodel import Field, SQLModel

from ledger.dbtypes import UTCDateTime, utcnow


class LogEntry(SQLModel, table=True):
    __tablename__ = "log_entries"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    event_type: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    entry: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    chain_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    recorded_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
