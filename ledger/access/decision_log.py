"""The batch of inference decisions waiting to be logged (DESIGN §4.9).

Authorize calls are too many for one log entry each: each signed decision becomes a leaf
(the hash of its token), and a flush appends one ``authorize.decisions`` entry binding the
batch by the Merkle root of its leaves. The tokens are signed, so each decision is
verifiable on its own; the entry makes the set of decisions tamper-evident.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable

from sqlalchemy.orm import Session

from ledger.provenance import log
from ledger.provenance.merkle import leaf_hash, root_hash

Leaf = tuple[bytes, str, str]  # (leaf hash, permit | deny | unknown, pipeline id)


class DecisionLog:
    """Decisions taken and not yet logged, and their flushing: one per process."""

    def __init__(self) -> None:
        self._pending: list[Leaf] = []
        self._lock = threading.Lock()  # guards _pending
        self._flush_lock = threading.Lock()  # one flush at a time, from take to commit

    def add(self, leaves: Iterable[Leaf]) -> None:
        with self._lock:
            self._pending.extend(leaves)

    def refused(self, *, pipeline_id: str, study_uid: str) -> None:
        """Record an authorize call for an unknown study (logged with the next batch)."""
        digest = hashlib.sha256(study_uid.encode()).hexdigest()
        self.add([(leaf_hash(f"unknown-study|{digest}".encode()), "unknown", pipeline_id)])

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def flushing(self) -> bool:
        return self._flush_lock.locked()

    def flush(self, sessions: Callable[[], Session]) -> int:
        """Append one log entry for the decisions taken since the last flush, in a
        transaction of its own (the caller's may be read-only).

        Returns only once the batch is durable: flushes are serialised end to end (take,
        append, commit), so a concurrent flush waits for the one holding the decisions it
        would have logged. A batch whose append or commit fails is put back in front of
        the pending decisions, to be logged by the next flush."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                with sessions() as session:
                    _append(session, batch)
                    session.commit()
            except BaseException:
                with self._lock:
                    self._pending = batch + self._pending
                raise
            return len(batch)


def _append(session: Session, batch: list[Leaf]) -> None:
    log.append(
        session,
        "authorize.decisions",
        {
            "count": len(batch),
            "permits": sum(1 for _, kind, _ in batch if kind == "permit"),
            "denies": sum(1 for _, kind, _ in batch if kind == "deny"),
            "unknown_studies": sum(1 for _, kind, _ in batch if kind == "unknown"),
            "tokens_root": root_hash([h for h, _, _ in batch]).hex(),
            "pipelines": sorted({pid for _, _, pid in batch}),
        },
    )
