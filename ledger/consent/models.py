"""Subject table. A subject is known only by a keyed pseudonym of issuer and patient id;
the identifier itself is never stored (DESIGN invariant 4)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Integer, LargeBinary, String
from sqlmodel import Field, SQLModel

from ledger.dbtypes import UTCDateTime, utcnow


class Subject(SQLModel, table=True):
    __tablename__ = "subjects"

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    pseudonym: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False, unique=True))
    sex: str | None = Field(default=None, sa_column=Column(String(16)))
    birth_year: int | None = Field(default=None, sa_column=Column(Integer))
    site: str | None = Field(default=None, sa_column=Column(String(100), index=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    erased_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
