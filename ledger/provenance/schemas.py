"""Shapes of the transparency-log API. Hashes are standard base64, as in signed notes."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ledger.provenance.models import CheckpointRecord, LogEntry


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class CheckpointPublic(BaseModel):
    size: int = Field(description="Number of entries the checkpoint covers.")
    root_hash: str = Field(description="RFC 9162 root hash, base64.")
    kid: str = Field(description="Signing key (RFC 7638 thumbprint, as in the JWKS).")
    created_at: datetime
    note: str = Field(description="The C2SP signed note, verbatim.")

    @classmethod
    def of(cls, record: CheckpointRecord) -> CheckpointPublic:
        return cls(
            size=record.size,
            root_hash=b64(record.root_hash),
            kid=record.kid,
            created_at=record.created_at,
            note=record.note,
        )


class EntryPublic(BaseModel):
    index: int
    leaf_hash: str = Field(description="SHA-256(0x00 || raw), base64.")
    raw: str = Field(description="The exact canonical JSON bytes that were hashed, base64.")
    entry: dict[str, Any] = Field(description="The same entry, parsed.")

    @classmethod
    def of(cls, row: LogEntry) -> EntryPublic:
        raw = bytes(row.entry)
        return cls(index=row.seq, leaf_hash=b64(row.leaf_hash), raw=b64(raw), entry=json.loads(raw))


class EntriesPage(BaseModel):
    entries: list[EntryPublic]
    next_start: int | None = Field(description="Index to ask for next; null at the end.")


class InclusionProof(BaseModel):
    index: int
    tree_size: int
    leaf_hash: str
    root_hash: str
    proof: list[str] = Field(description="RFC 9162 audit path, leaf to root, base64.")


class ConsistencyProof(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64.")
