"""Salted commitments: how the immutable log names a subject without personal data.

The log holds ``SHA-256(salt || subject id)``; the salt lives in an ordinary, erasable
table. Erasing the salt leaves every log entry and the Merkle tree intact and verifiable,
but nobody can link those entries to the subject any more (DESIGN invariant 4).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import Column, ForeignKey, LargeBinary, String, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel

from ledger.dbtypes import UTCDateTime, utcnow


class SubjectSalt(SQLModel, table=True):
    __tablename__ = "subject_salts"

    subject_id: str = Field(
        sa_column=Column(String(36), ForeignKey("subjects.id"), primary_key=True)
    )
    salt: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


def commit_with(salt: bytes, subject_id: str) -> str:
    return hashlib.sha256(salt + subject_id.encode()).hexdigest()


def subject_commitment(session: Session, subject_id: str) -> str:
    """The commitment to use in log entries for ``subject_id`` (creates its salt once)."""
    row = session.get(SubjectSalt, subject_id)
    if row is None:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert(SubjectSalt)
            .values(subject_id=subject_id, salt=secrets.token_bytes(32), created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["subject_id"])
        )
        row = session.get(SubjectSalt, subject_id)
        assert row is not None
    return commit_with(bytes(row.salt), subject_id)


def erase_salt(session: Session, subject_id: str) -> bool:
    """Forget the salt; returns whether there was one. Log entries stay, unlinkable."""
    result = session.execute(delete(SubjectSalt).where(SubjectSalt.subject_id == subject_id))  # type: ignore[arg-type]
    return bool(getattr(result, "rowcount", 0))
