"""Log tables. ``seq`` is the RFC 9162 leaf index (0-based), so the Merkle tree over
``leaf_hash`` in ``seq`` order is the transparency log; ``chain_hash`` links each entry to
the previous one so a gap or a reordering shows without any checkpoint."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, LargeBinary, String, Text
from sqlmodel import Field, SQLModel

from ledger.clock import utcnow
from ledger.dbtypes import UTCDateTime


class LogEntry(SQLModel, table=True):
    __tablename__ = "log_entries"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    event_type: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    entry: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False, index=True))
    chain_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    recorded_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


class CheckpointRecord(SQLModel, table=True):
    """A signed checkpoint as issued; verification re-checks every one against the tree."""

    __tablename__ = "log_checkpoints"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    kid: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


class LogRef(SQLModel, table=True):
    """What an entry is about (``subject:<commitment>``, ``grant:<id>``, ...), for auditor
    queries. An index, not evidence: it is derived from the entries and can be rebuilt."""

    __tablename__ = "log_refs"

    ref: str = Field(sa_column=Column(String(160), primary_key=True))
    seq: int = Field(
        sa_column=Column(
            BigInteger, ForeignKey("log_entries.seq"), primary_key=True, autoincrement=False
        )
    )


class LogMark(SQLModel, table=True):
    """The seq of the newest entry of a kind, kept in the same transaction as the entry.

    ``decision_inputs`` marks the last change that can alter a consent decision (a consent,
    a subject, an image, a policy set): caches of decisions are valid while it stays put,
    however many releases or decision batches are logged meanwhile.
    """

    __tablename__ = "log_marks"

    name: str = Field(sa_column=Column(String(32), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
