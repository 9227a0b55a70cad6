"""Access requests, steward reviews and grants.

Per-image outcomes are stored compactly: the request keeps the list of equivalence classes
(fact vector, decision, policy ids, reasons) and, per image of the dataset in manifest order,
the index of its class (a zlib-compressed array). A million-image request stays one row and
every image's decision can still be explained by policy id and consent event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from ledger.clock import utcnow
from ledger.dbtypes import JSONType, UTCDateTime


class AccessRequest(SQLModel, table=True):
    __tablename__ = "access_requests"
    id: str = Field(sa_column=Column(String(36), primary_key=True))
    requester_id: str = Field(
        sa_column=Column(String(36), ForeignKey("principals.id"), nullable=False, index=True)
    )
    dataset_id: str = Field(
        sa_column=Column(String(36), ForeignKey("datasets.id"), nullable=False, index=True)
    )
    purpose: str = Field(sa_column=Column(String(64), nullable=False))
    # The DUO category, or the diseases named (comma-separated, sorted): up to 16 CURIEs.
    duo_category: str | None = Field(default=None, sa_column=Column(String(1024)))
    justification: str = Field(sa_column=Column(Text, nullable=False))
    irb_reference: str | None = Field(default=None, sa_column=Column(String(200)))
    commercial: bool = Field(sa_column=Column(Boolean, nullable=False))
    # What the request states for PUB, RTN, COL and MOR (``ledger.access.conditions``).
    conditions: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONType, nullable=False, server_default="{}"),
    )
    status: str = Field(sa_column=Column(String(16), nullable=False, index=True))
    as_of: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    policy_hash: str = Field(sa_column=Column(String(64), nullable=False))
    consent_snapshot: str = Field(sa_column=Column(String(64), nullable=False))
    eligible_count: int = Field(sa_column=Column(Integer, nullable=False))
    excluded_count: int = Field(sa_column=Column(Integer, nullable=False))
    eligible_root: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    required_approvals: int = Field(sa_column=Column(Integer, nullable=False))
    auto_approved: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    evaluation: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    classes: list[dict[str, Any]] = Field(sa_column=Column(JSONType, nullable=False))
    outcomes: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    decided_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class AccessReview(SQLModel, table=True):
    __tablename__ = "access_reviews"
    __table_args__ = (UniqueConstraint("request_id", "steward_id"),)

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    request_id: str = Field(
        sa_column=Column(String(36), ForeignKey("access_requests.id"), nullable=False, index=True)
    )
    steward_id: str = Field(
        sa_column=Column(String(36), ForeignKey("principals.id"), nullable=False)
    )
    verdict: str = Field(sa_column=Column(String(16), nullable=False))
    comment: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


class Grant(SQLModel, table=True):
    __tablename__ = "grants"

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    request_id: str = Field(
        sa_column=Column(String(36), ForeignKey("access_requests.id"), nullable=False, unique=True)
    )
    pipeline_id: str = Field(
        sa_column=Column(String(36), ForeignKey("principals.id"), nullable=False, index=True)
    )
    token: str = Field(sa_column=Column(Text, nullable=False))
    kid: str = Field(sa_column=Column(String(64), nullable=False))
    manifest_root: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    issued_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    revoke_reason: str | None = Field(default=None, sa_column=Column(Text))


class GrantImage(SQLModel, table=True):
    """A grant's frozen manifest: its eligible images in leaf order, each with the
    de-identified instance UID the pipeline sees (unique per grant, so the same image
    released under two grants cannot be linked by its UID)."""

    __tablename__ = "grant_images"
    __table_args__ = (
        UniqueConstraint("grant_id", "deid_uid", name="uq_grant_images_grant_id_deid_uid"),
    )

    grant_id: str = Field(sa_column=Column(String(64), ForeignKey("grants.id"), primary_key=True))
    position: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    image_id: str = Field(
        sa_column=Column(String(36), ForeignKey("images.id"), nullable=False, index=True)
    )
    deid_uid: str = Field(sa_column=Column(String(64), nullable=False))
