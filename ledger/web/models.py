"""Console sign-in sessions. Only a hash of the cookie value is stored, so a database
reader cannot take over a session; signing out or expiry ends it server-side."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, String
from sqlmodel import Field, SQLModel

from ledger.clock import utcnow
from ledger.dbtypes import UTCDateTime


class WebSession(SQLModel, table=True):
    __tablename__ = "web_sessions"

    token_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    principal_id: str = Field(
        sa_column=Column(String(36), ForeignKey("principals.id"), nullable=False, index=True)
    )
    # The key it was opened with: revoking or rotating that key ends the session.
    api_key_id: str | None = Field(
        default=None, sa_column=Column(String(32), ForeignKey("api_keys.id"))
    )
    csrf: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
