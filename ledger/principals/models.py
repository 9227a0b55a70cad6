"""Principal and API-key tables. Keys are stored only as SHA-256 hashes: they are 256-bit
random secrets, so a slow password hash would add latency to every call and no safety."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, LargeBinary, String
from sqlmodel import Field, SQLModel

from ledger.clock import utcnow
from ledger.dbtypes import JSONType, UTCDateTime
from ledger.principals.roles import OrganisationType as OrganisationType
from ledger.principals.roles import PrincipalKind as PrincipalKind
from ledger.principals.roles import Role as Role


class Principal(SQLModel, table=True):
    __tablename__ = "principals"

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    roles: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    organisation_type: str = Field(
        default="unknown",
        sa_column=Column(String(16), nullable=False, server_default="unknown"),
    )
    # ISO 3166-1 alpha-2 country the principal acts from (what GS consents weigh).
    region: str | None = Field(default=None, sa_column=Column(String(2)))
    # The institution it acts for, as a code (what IS consents list).
    institution: str | None = Field(default=None, sa_column=Column(String(64)))
    disabled: bool = Field(default=False, nullable=False)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    principal_id: str = Field(
        sa_column=Column(String(36), ForeignKey("principals.id"), nullable=False, index=True)
    )
    key_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
