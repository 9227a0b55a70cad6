"""Registered model versions and their lineage to grants."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from ledger.clock import utcnow
from ledger.dbtypes import UTCDateTime


class ModelRecord(SQLModel, table=True):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    version: str = Field(sa_column=Column(String(64), nullable=False))
    artefact_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text))
    registered_by: str = Field(
        sa_column=Column(String(36), ForeignKey("principals.id"), nullable=False, index=True)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


class ModelGrant(SQLModel, table=True):
    """One grant a model used, and how (training, validation, fine-tuning)."""

    __tablename__ = "model_grants"

    model_id: str = Field(sa_column=Column(String(36), ForeignKey("models.id"), primary_key=True))
    grant_id: str = Field(
        sa_column=Column(String(64), ForeignKey("grants.id"), primary_key=True, index=True)
    )
    usage: str = Field(sa_column=Column(String(32), nullable=False))
