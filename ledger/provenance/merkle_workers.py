"""A second process for the Merkle roots of large manifests.

The root over half a million eligible images is half a million SHA-256 calls, which one
Python thread makes one after another (hashlib holds the GIL for inputs this small). The
server starts one worker process at start-up (``python -m ledger.provenance.merkle_workers``,
talking over its standard input and output); a large root then has one of its two largest
subtrees hashed there while this process hashes the rest, which roughly halves the time on
a machine with two cores. Without a started worker, for small trees, while the worker is
busy with another request, or if it has died, roots are computed here as
``merkle.root_of_packed`` computes them: the answer never depends on the worker.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import subprocess
import sys
import threading
from typing import IO

from ledger.provenance.merkle import HASH_SIZE, node_hash, root_of_packed, split

log = logging.getLogger(__name__)

PARALLEL_FROM = 1 << 16  # leaves; below this the hand-off costs more than it saves
LENGTH = struct.Struct(">Q")

_lock = threading.Lock()  # one tree at a time in the worker; others hash here
_worker: subprocess.Popen[bytes] | None = None


def start() -> bool:
    """Start the worker (once); False where there is no second core to give it."""
    global _worker
    if (os.cpu_count() or 1) < 2:
        return False
    with _lock:
        if _worker is None or _worker.poll() is not None:
            _worker = subprocess.Popen(
                [sys.executable, "-m", "ledger.provenance.merkle_workers"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
    return True


def stop() -> None:
    global _worker
    with _lock:
        worker, _worker = _worker, None
    if worker is None:
        return
    if worker.stdin is not None:
        worker.stdin.close()  # end of input: the worker exits
    try:
        worker.wait(timeout=5)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    if worker.stdout is not None:
        worker.stdout.close()


def _discard(worker: subprocess.Popen[bytes]) -> None:
    """Forget a worker that failed (the caller holds the lock)."""
    global _worker
    if _worker is worker:
        _worker = None
    worker.kill()
    worker.wait()


def _read(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the hashing worker closed its output")
    return data


def root(leaves: bytes) -> bytes:
    """``merkle.root_of_packed``, with the larger of the two subtrees below the left
    child of the root hashed in the worker (RFC 9162: the left child of a tree of n
    leaves is the perfect tree over the first k, k the largest power of two below n)."""
    count = len(leaves) // HASH_SIZE
    if count < PARALLEL_FROM or len(leaves) % HASH_SIZE or not _lock.acquire(blocking=False):
        return root_of_packed(leaves)
    try:
        worker = _worker
        if worker is None or worker.stdin is None or worker.stdout is None:
            return root_of_packed(leaves)
        k = split(count)
        half = k // 2
        # [0, half) and [half, k) under the left child of the root, [k, count) the right.
        cuts = [0, half * HASH_SIZE, k * HASH_SIZE, len(leaves)]
        parts = [leaves[a:b] for a, b in itertools.pairwise(cuts)]
        away = 2 if count - k > half else 1  # the worker takes the larger of the last two
        try:
            worker.stdin.write(LENGTH.pack(len(parts[away])) + parts[away])
            worker.stdin.flush()
            hashes = [b"" if n == away else root_of_packed(p) for n, p in enumerate(parts)]
            hashes[away] = _read(worker.stdout, HASH_SIZE)
        except (OSError, EOFError):
            log.warning("the hashing worker is gone; hashing here")
            _discard(worker)
            return root_of_packed(leaves)
        return node_hash(node_hash(hashes[0], hashes[1]), hashes[2])
    finally:
        _lock.release()


def _serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The worker: a root for each length-prefixed run of leaves, until end of input."""
    while header := source.read(LENGTH.size):
        if len(header) != LENGTH.size:
            raise EOFError("input ended inside a length")
        (size,) = LENGTH.unpack(header)
        sink.write(root_of_packed(_read(source, size)))
        sink.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
