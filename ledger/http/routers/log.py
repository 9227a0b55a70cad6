"""The transparency log over HTTP. Checkpoints and proofs are public: anyone holding a
checkpoint can check that the log only grew. Raw entries need the auditor or admin role,
since even pseudonymous events are nobody else's business."""

from __future__ import annotations

import base64
import re
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import select
from sqlmodel import col

from ledger.errors import InvalidInput, NotFound
from ledger.http.deps import SessionDep, StateDep
from ledger.http.security import Auditing
from ledger.limits import MAX_INT
from ledger.provenance import checkpoints
from ledger.provenance.models import LogEntry
from ledger.provenance.schemas import (
    CheckpointPublic,
    ConsistencyProof,
    EntriesPage,
    EntryPublic,
    InclusionProof,
    b64,
)

router = APIRouter(prefix="/v1/log", tags=["transparency log"])

NOTE_MEDIA = "text/plain; charset=utf-8"


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    response_model=None,
    responses={
        200: {
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": CheckpointPublic.model_json_schema()},
            }
        }
    },
)
def get_checkpoint(
    session: SessionDep,
    size: Annotated[
        int | None, Query(ge=0, le=MAX_INT, description="A stored size; default newest.")
    ] = None,
    format: Annotated[str, Query(pattern="^(note|json)$")] = "note",
) -> Response:
    """The newest signed checkpoint as a C2SP signed note (``format=json`` for JSON)."""
    record = checkpoints.get(session, size)
    if format == "json":
        return JSONResponse(CheckpointPublic.of(record).model_dump(mode="json"))
    return PlainTextResponse(record.note, media_type=NOTE_MEDIA)


@router.post("/checkpoint", status_code=201, response_model=CheckpointPublic)
def post_checkpoint(session: SessionDep, state: StateDep, caller: Auditing) -> CheckpointPublic:
    """Sign the current tree head now (returns the existing one if nothing was appended)."""
    record = checkpoints.create(session, state.log_tree, state.keys, state.settings.log_origin)
    return CheckpointPublic.of(record)


@router.get("/entries", response_model=EntriesPage)
def get_entries(
    session: SessionDep,
    caller: Auditing,
    start: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EntriesPage:
    """Entries ``start`` to ``start + limit - 1``, with the bytes that were hashed."""
    rows = (
        session.execute(
            select(LogEntry)
            .where(col(LogEntry.seq) >= start)
            .order_by(col(LogEntry.seq))
            .limit(limit + 1)
        )
        .scalars()
        .all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return EntriesPage(
        entries=[EntryPublic.of(r) for r in rows],
        next_start=rows[-1].seq + 1 if more else None,
    )


def _tree_size(session: SessionDep, state: StateDep, requested: int | None) -> int:
    """Default to the newest checkpoint, so proofs line up with a signed root."""
    size = state.log_tree.sync(session)
    if requested is None:
        latest = checkpoints.latest(session)
        return latest.size if latest is not None else size
    if requested > size:
        raise InvalidInput(f"tree_size {requested} exceeds the log's {size} entries")
    return requested


HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")


def _digest(leaf_hash: str) -> bytes:
    """A SHA-256 leaf hash given in hex (64 digits) or base64 (as this API writes it)."""
    if HEX_DIGEST.match(leaf_hash):
        return bytes.fromhex(leaf_hash)
    try:
        digest = base64.b64decode(leaf_hash, validate=True)
    except ValueError as exc:  # binascii.Error, and non-ASCII text
        raise InvalidInput("leaf_hash must be a SHA-256 digest in base64 or hex") from exc
    if len(digest) != 32:
        raise InvalidInput("leaf_hash must be a SHA-256 digest in base64 or hex (32 bytes)")
    return digest


def _leaf_index(session: SessionDep, leaf_hash: str) -> int:
    digest = _digest(leaf_hash)
    seq = session.execute(
        select(col(LogEntry.seq)).where(col(LogEntry.leaf_hash) == digest).limit(1)
    ).scalar_one_or_none()
    if seq is None:
        raise NotFound("no entry has this leaf hash")
    return int(seq)


@router.get("/proofs/inclusion", response_model=InclusionProof)
def inclusion(
    session: SessionDep,
    state: StateDep,
    index: Annotated[int | None, Query(ge=0, le=MAX_INT, description="Entry index.")] = None,
    leaf_hash: Annotated[
        str | None,
        Query(max_length=100, description="Or the entry's leaf hash (base64 or hex)."),
    ] = None,
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> InclusionProof:
    """Proof that one entry is in the tree of ``tree_size`` (default: newest checkpoint)."""
    if (index is None) == (leaf_hash is None):
        raise InvalidInput("give exactly one of index or leaf_hash")
    if index is None:
        assert leaf_hash is not None
        index = _leaf_index(session, leaf_hash)
    size = _tree_size(session, state, tree_size)
    proof, root = state.log_tree.inclusion(index, size)
    leaf = state.log_tree.leaf(index)
    return InclusionProof(
        index=index,
        tree_size=size,
        leaf_hash=b64(leaf),
        root_hash=b64(root),
        proof=[b64(p) for p in proof],
    )


@router.get("/proofs/consistency", response_model=ConsistencyProof)
def consistency(
    session: SessionDep,
    state: StateDep,
    first: Annotated[int, Query(ge=1, le=MAX_INT, description="The older tree size.")],
    second: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="Default: newest checkpoint.")
    ] = None,
) -> ConsistencyProof:
    """Proof that the tree of size ``first`` is a prefix of the tree of size ``second``."""
    size = _tree_size(session, state, second)
    proof, first_root, second_root = state.log_tree.consistency(first, size)
    return ConsistencyProof(
        first=first,
        second=size,
        first_root=b64(first_root),
        second_root=b64(second_root),
        proof=[b64(p) for p in proof],
    )
