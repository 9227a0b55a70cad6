"""Image index, per-subject data keys and datasets.

Originals live encrypted in the object store; these rows are what queries and dataset
filters use. ``leaf_hash`` (RFC 9162 leaf of the image's content hash) is computed once at
ingest so a dataset's manifest root is a tree over stored leaves, not a re-read of files.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Date, ForeignKey, Index, Integer, LargeBinary, String
from sqlmodel import Field, SQLModel

from ledger.clock import utcnow
from ledger.dbtypes import JSONType, UTCDateTime


class SubjectKey(SQLModel, table=True):
    """A subject's data key, wrapped by the master key; destroying it shreds the images."""

    __tablename__ = "subject_keys"

    subject_id: str = Field(
        sa_column=Column(String(36), ForeignKey("subjects.id"), primary_key=True)
    )
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary(64)))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    destroyed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class Image(SQLModel, table=True):
    __tablename__ = "images"
    __table_args__ = (Index("ix_images_filter", "modality", "body_part", "study_date"),)

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    subject_id: str = Field(
        sa_column=Column(String(36), ForeignKey("subjects.id"), nullable=False, index=True)
    )
    sha256: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False, index=True))
    study_uid: str | None = Field(default=None, sa_column=Column(String(64), index=True))
    series_uid: str | None = Field(default=None, sa_column=Column(String(64)))
    sop_uid: str | None = Field(default=None, sa_column=Column(String(64), index=True))
    sop_class_uid: str | None = Field(default=None, sa_column=Column(String(64)))
    transfer_syntax: str | None = Field(default=None, sa_column=Column(String(64)))
    modality: str | None = Field(default=None, sa_column=Column(String(16)))
    body_part: str | None = Field(default=None, sa_column=Column(String(64)))
    study_date: date | None = Field(default=None, sa_column=Column(Date))
    manufacturer: str | None = Field(default=None, sa_column=Column(String(64)))
    burned_in: str | None = Field(default=None, sa_column=Column(String(8)))
    rows: int | None = Field(default=None, sa_column=Column(Integer))
    columns: int | None = Field(default=None, sa_column=Column(Integer))
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    erased_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class DatasetRecord(SQLModel, table=True):
    """A frozen manifest: its identity is the Merkle root over its images' sorted leaves."""

    __tablename__ = "datasets"

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    manifest_root: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    image_count: int = Field(sa_column=Column(Integer, nullable=False))
    selection: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    created_by: str | None = Field(default=None, sa_column=Column(String(64)))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )


class DatasetImage(SQLModel, table=True):
    __tablename__ = "dataset_images"

    dataset_id: str = Field(
        sa_column=Column(String(36), ForeignKey("datasets.id"), primary_key=True)
    )
    position: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    image_id: str = Field(
        sa_column=Column(String(36), ForeignKey("images.id"), nullable=False, index=True)
    )


class DatasetColumns(SQLModel, table=True):
    """A dataset's image attributes packed as arrays, for evaluating access requests
    without reading a million index rows (``ledger.images.columns``)."""

    __tablename__ = "dataset_columns"

    dataset_id: str = Field(
        sa_column=Column(String(36), ForeignKey("datasets.id"), primary_key=True)
    )
    image_count: int = Field(sa_column=Column(Integer, nullable=False))
    # The packed arrays themselves, or where the object store keeps them sealed and the
    # key that opens them, wrapped by the master key.
    arrays: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    address: str | None = Field(default=None, sa_column=Column(String(64)))
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
