"""Salted commitments: how the immutable log names a subject without personal data.

The log holds ``SHA-256(salt || subject id)``; the salt lives in an ordinary, erasable
table. Erasing the salt leaves every log entry and the Merkle tree intact and verifiable,
but nobody can link those entries to the subject any more (no personal data in the log).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import Column, ForeignKey, LargeBinary, String, delete, select
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel, col

from ledger import dialect
from ledger.clock import utcnow
from ledger.db import bulk_insert
from ledger.dbtypes import UTCDateTime, table_of


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
        insert = dialect.insert_ignoring_conflicts(session, SubjectSalt, ["subject_id"])
        session.execute(
            insert.values(subject_id=subject_id, salt=secrets.token_bytes(32), created_at=utcnow())
        )
        row = session.get(SubjectSalt, subject_id)
        assert row is not None
    return commit_with(bytes(row.salt), subject_id)


def erase_salt(session: Session, subject_id: str) -> bool:
    """Forget the salt; returns whether there was one. Log entries stay, unlinkable."""
    result = session.execute(delete(SubjectSalt).where(SubjectSalt.subject_id == subject_id))  # type: ignore[arg-type]
    return bool(getattr(result, "rowcount", 0))


def commitments_for(session: Session, subject_ids: list[str], chunk: int = 5_000) -> dict[str, str]:
    """Commitments for many subjects at once (bulk imports), creating missing salts."""
    ids = list(dict.fromkeys(subject_ids))
    salts: dict[str, bytes] = {}
    for i in range(0, len(ids), chunk):
        part = ids[i : i + chunk]
        rows = session.execute(
            select(col(SubjectSalt.subject_id), col(SubjectSalt.salt)).where(
                col(SubjectSalt.subject_id).in_(part)
            )
        )
        salts.update((sid, bytes(salt)) for sid, salt in rows)
    now = utcnow()
    fresh = {sid: secrets.token_bytes(32) for sid in ids if sid not in salts}
    new = [{"subject_id": sid, "salt": salt, "created_at": now} for sid, salt in fresh.items()]
    for i in range(0, len(new), chunk):
        bulk_insert(session, table_of(SubjectSalt), new[i : i + chunk])
    salts.update(fresh)
    return {sid: commit_with(salts[sid], sid) for sid in ids}
