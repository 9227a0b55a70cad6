"""Roots hashed partly in the worker process are the roots hashed here, for every shape of
tree the split meets, and a dead worker only costs time."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ledger.config import Settings
from ledger.provenance import merkle_workers
from ledger.provenance.merkle import root_hash
from ledger.server import create_app

# Powers of two, one past them, and trees whose right part outgrows the left's halves.
SIZES = [4, 5, 7, 8, 9, 12, 16, 17, 31, 33, 100, 128, 129, 191]


def _leaves(count: int) -> list[bytes]:
    return [hashlib.sha256(n.to_bytes(4, "big")).digest() for n in range(count)]


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(merkle_workers, "PARALLEL_FROM", 4)
    if not merkle_workers.start():
        pytest.skip("one core: no worker to start")
    yield
    merkle_workers.stop()


@pytest.mark.usefixtures("worker")
def test_roots_with_the_worker_are_the_roots() -> None:
    for count in SIZES:
        leaves = _leaves(count)
        assert merkle_workers.root(b"".join(leaves)) == root_hash(leaves), count


def test_roots_without_a_worker_are_the_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merkle_workers, "PARALLEL_FROM", 4)
    merkle_workers.stop()
    for count in [0, 1, 2, *SIZES]:
        leaves = _leaves(count)
        assert merkle_workers.root(b"".join(leaves)) == root_hash(leaves), count


@pytest.mark.usefixtures("worker")
def test_a_dead_worker_falls_back_to_hashing_here() -> None:
    worker = merkle_workers._worker
    assert worker is not None
    worker.kill()
    worker.wait()
    for count in [9, 100]:
        leaves = _leaves(count)
        assert merkle_workers.root(b"".join(leaves)) == root_hash(leaves)
    assert merkle_workers._worker is None  # forgotten; start() makes a new one
    assert merkle_workers.start()
    leaves = _leaves(33)
    assert merkle_workers.root(b"".join(leaves)) == root_hash(leaves)


def test_the_worker_protocol_answers_each_run_of_leaves() -> None:
    runs = [_leaves(n) for n in (1, 5, 64)]
    source = io.BytesIO(
        b"".join(merkle_workers.LENGTH.pack(32 * len(r)) + b"".join(r) for r in runs)
    )
    sink = io.BytesIO()
    merkle_workers._serve(source, sink)
    assert sink.getvalue() == b"".join(root_hash(r) for r in runs)
    with pytest.raises(EOFError):
        merkle_workers._serve(io.BytesIO(merkle_workers.LENGTH.pack(64) + bytes(10)), sink)


def test_the_server_starts_the_worker_and_stops_it(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"hash_worker": True}))
    with TestClient(app):
        worker = merkle_workers._worker
        if (os.cpu_count() or 1) >= 2:
            assert worker is not None
            assert worker.poll() is None
    assert merkle_workers._worker is None
    if worker is not None:
        assert worker.poll() is not None  # exited
