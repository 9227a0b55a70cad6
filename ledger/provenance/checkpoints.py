"""Signed checkpoints and proofs over the committed log.

The server keeps the log's Merkle tree in memory (``LogTree``) and extends it with the
entries committed since it last looked, so a proof over millions of entries costs a few
dictionary lookups, not a rebuild. Checkpoints are signed with the installation's active
Ed25519 key under the configured origin and stored, so verification can re-check every
tree head the log ever vouched for.
"""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.errors import Conflict, InvalidInput, NotFound
from ledger.keystore import KeyRing
from ledger.provenance import log
from ledger.provenance.merkle import MerkleTree
from ledger.provenance.models import CheckpointRecord, LogEntry
from ledger.provenance.note import Checkpoint, Verifier, sign

FETCH_BATCH = 50_000


def verifiers(keys: KeyRing, origin: str) -> list[Verifier]:
    """Every key checkpoints of this installation may carry (old keys stay valid)."""
    return [Verifier(origin, key.public_bytes) for key in keys.signing.values()]


class LogTree:
    """The Merkle tree of committed entries, shared by the requests of one process."""

    def __init__(self) -> None:
        self._tree = MerkleTree()
        self._lock = threading.Lock()

    def sync(self, session: Session) -> int:
        """Add entries committed since the last call; returns the tree size."""
        with self._lock:
            while True:
                rows = session.execute(
                    select(col(LogEntry.leaf_hash))
                    .where(col(LogEntry.seq) >= self._tree.size)
                    .order_by(col(LogEntry.seq))
                    .limit(FETCH_BATCH)
                ).scalars()
                batch = [bytes(h) for h in rows]
                self._tree.extend(batch)
                if len(batch) < FETCH_BATCH:
                    return self._tree.size

    def leaf(self, index: int) -> bytes:
        with self._lock:
            return self._tree.levels[0][index]

    def root(self, size: int) -> bytes:
        with self._lock:
            return self._tree.root(size)

    def inclusion(self, index: int, size: int) -> tuple[list[bytes], bytes]:
        with self._lock:
            if not 0 <= index < size <= self._tree.size:
                raise InvalidInput(f"no entry {index} in a tree of size {size}")
            return self._tree.inclusion_proof(index, size), self._tree.root(size)

    def consistency(self, first: int, second: int) -> tuple[list[bytes], bytes, bytes]:
        with self._lock:
            if not 0 < first <= second <= self._tree.size:
                raise InvalidInput(
                    f"no consistency proof from size {first} to {second} "
                    f"(the log has {self._tree.size} entries; sizes start at 1)"
                )
            proof = self._tree.consistency_proof(first, second)
            return proof, self._tree.root(first), self._tree.root(second)


def latest(session: Session) -> CheckpointRecord | None:
    return session.execute(
        select(CheckpointRecord).order_by(col(CheckpointRecord.size).desc()).limit(1)
    ).scalar_one_or_none()


def get(session: Session, size: int | None) -> CheckpointRecord:
    record = latest(session) if size is None else session.get(CheckpointRecord, size)
    if record is None:
        raise NotFound(
            "no checkpoint has been signed yet; one is made on a schedule, "
            "or ask for one with POST /v1/log/checkpoint"
            if size is None
            else f"no checkpoint of size {size}"
        )
    return record


def _head_size(session: Session) -> int:
    """Size of the log under the append lock, so no entry lands before it is signed."""
    head, _ = log.lock_head(session)
    return head + 1


def create(session: Session, tree: LogTree, keys: KeyRing, origin: str) -> CheckpointRecord:
    """Sign the current tree head; returns the stored one if this size is already signed."""
    size = _head_size(session)
    existing = session.get(CheckpointRecord, size)
    if existing is not None:
        return existing
    if tree.sync(session) < size:
        raise Conflict("the log changed while signing; try again")
    checkpoint = Checkpoint(origin, size, tree.root(size))
    record = CheckpointRecord(
        size=size,
        root_hash=checkpoint.root_hash,
        note=sign(checkpoint, origin, keys.active.private),
        kid=keys.active.kid,
    )
    session.add(record)
    session.flush()
    return record


def is_stale(session: Session) -> bool:
    """Whether entries were appended since the newest checkpoint (or none exists)."""
    record = latest(session)
    return record is None or record.size < _head_size(session)
