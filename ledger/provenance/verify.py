"""Verification of a log from its raw entries alone, shared by the database check and the
offline bundle check so both find exactly the same faults.

One pass, constant memory: each entry is hashed into the hash chain and into a compact
range (the roots of the perfect subtrees so far), and every checkpoint is compared when the
pass reaches its size. The first fault is reported with its index, as an auditor needs to
know where history stops being trustworthy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from ledger.provenance.merkle import EMPTY_ROOT, node_hash
from ledger.provenance.note import Checkpoint, NoteError, Verifier, open_note

GENESIS_CHAIN = b"\x00" * 32
_SEQ_KEY = b',"seq":'


@dataclass(frozen=True)
class Fault:
    """One thing wrong; ``index`` is the first log index it makes untrustworthy."""

    index: int | None
    message: str


@dataclass
class Report:
    entries: int = 0
    root_hash: bytes = EMPTY_ROOT
    checkpoints_checked: int = 0
    faults: list[Fault] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.faults

    @property
    def first_bad_index(self) -> int | None:
        indexes = [f.index for f in self.faults if f.index is not None]
        return min(indexes) if indexes else None


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint note plus where it came from (the log's table, or an auditor's copy)."""

    note: str
    source: str
    stored_size: int | None = None
    stored_root: bytes | None = None


def entry_seq(entry: bytes) -> int | None:
    """The ``seq`` an entry claims, read without parsing it.

    RFC 8785 sorts keys, so the top-level ``seq`` follows ``data``; it is the last
    ``,"seq":`` because only ``time``, ``type`` and ``v`` (fixed shapes) come after it.
    """
    at = entry.rfind(_SEQ_KEY)
    if at < 0:
        return None
    start = at + len(_SEQ_KEY)
    end = entry.find(b",", start)
    digits = entry[start:end]
    return int(digits) if digits.isdigit() else None


class CompactRange:
    """Roots of the perfect subtrees covering leaves [0, size): the RFC 9162 tree head at
    any moment in O(log n) memory."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        stack = self._stack
        stack.append(leaf)
        n = self.size
        while n & 1:
            right = stack.pop()
            stack[-1] = node_hash(stack[-1], right)
            n >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        acc = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            acc = node_hash(left, acc)
        return acc


class _Checkpoints:
    """Signed checkpoints grouped by size, opened once, checked as the pass reaches them."""

    def __init__(
        self,
        notes: Iterable[SignedCheckpoint],
        origin: str | None,
        verifiers: list[Verifier],
        report: Report,
    ) -> None:
        self.report = report
        self.by_size: dict[int, list[tuple[Checkpoint, SignedCheckpoint]]] = {}
        for signed in notes:
            try:
                checkpoint, _ = open_note(signed.note, verifiers)
            except NoteError as exc:
                self._fault(None, f"{signed.source}: {exc}")
                continue
            if origin is not None and checkpoint.origin != origin:
                self._fault(
                    None,
                    f"{signed.source}: origin {checkpoint.origin!r} is not this log's ({origin!r})",
                )
                continue
            if signed.stored_size is not None and (
                signed.stored_size != checkpoint.size or signed.stored_root != checkpoint.root_hash
            ):
                self._fault(
                    None, f"{signed.source}: stored size or root differs from the signed note"
                )
            self.by_size.setdefault(checkpoint.size, []).append((checkpoint, signed))
        for size, group in sorted(self.by_size.items()):
            if len({c.root_hash for c, _ in group}) > 1:
                sources = ", ".join(s.source for _, s in group)
                self._fault(
                    None,
                    f"equivocation: validly signed checkpoints of size {size} "
                    f"with different roots ({sources})",
                )

    def _fault(self, index: int | None, message: str) -> None:
        self.report.faults.append(Fault(index, message))

    def check(self, size: int, root: bytes, last_good: int) -> bool:
        agrees = True
        for checkpoint, signed in self.by_size.pop(size, []):
            self.report.checkpoints_checked += 1
            if checkpoint.root_hash != root:
                self._fault(
                    last_good,
                    f"{signed.source}: signed root for size {size} does not match the "
                    f"entries: history in [{last_good}, {size}) was rewritten",
                )
                agrees = False
        return agrees

    def leftovers(self, size: int) -> None:
        for cp_size in sorted(self.by_size):
            for _, signed in self.by_size[cp_size]:
                self._fault(
                    size,
                    f"{signed.source}: signed for {cp_size} entries but the log has only "
                    f"{size}: entries from {size} on were deleted or the log was rolled back",
                )


def verify_entries(
    rows: Iterable[tuple[int, bytes, bytes | None, bytes | None]],
    checkpoints: Iterable[SignedCheckpoint],
    verifiers: list[Verifier],
    *,
    origin: str | None = None,
) -> Report:
    """Check ``(seq, entry, stored leaf hash, stored chain hash)`` rows in seq order.

    Stored hashes may be ``None`` (a bundle carries only entries); the chain and tree are
    recomputed either way. Stops at the first entry fault, since nothing after it can be
    placed, but still reports checkpoints that could not be reached.
    """
    report = Report()
    pending = _Checkpoints(checkpoints, origin, verifiers, report)
    tree = CompactRange()
    chain = GENESIS_CHAIN
    last_good = 0
    sha256 = hashlib.sha256
    sizes = set(pending.by_size)
    for seq, entry, stored_leaf, stored_chain in rows:
        fault = None
        expected = tree.size
        if seq != expected:
            kind = "missing (deleted?)" if seq > expected else "duplicated or reordered"
            fault = f"entry {expected} is {kind}: found index {seq} in its place"
        elif entry_seq(entry) != seq:
            fault = f"entry {seq} claims index {entry_seq(entry)}: entries were moved"
        leaf = sha256(b"\x00" + entry).digest()
        if fault is None and stored_leaf is not None and leaf != stored_leaf:
            fault = f"entry {seq} was edited: its content does not match its leaf hash"
        chain = sha256(chain + leaf).digest()
        if fault is None and stored_chain is not None and chain != stored_chain:
            fault = f"hash chain broken at entry {seq}: an entry before it was altered"
        if fault is not None:
            report.faults.append(Fault(expected, fault))
            break
        tree.append(leaf)
        if tree.size in sizes and pending.check(tree.size, tree.root(), last_good):
            last_good = tree.size
    report.entries = tree.size
    report.root_hash = tree.root()
    if report.ok:
        pending.leftovers(tree.size)
    report.faults.sort(key=lambda f: (f.index is None, f.index or 0))
    return report
