"""Transparency-log benchmarks: appends/s, full verification entries/s, proof latency.

Goals (docs/architecture.md §4): appends >= 1,000/s SQLite and >= 500/s PostgreSQL with 4 writers;
verification >= 200,000 entries/s over 1M entries; inclusion/consistency proof p99 <= 5 ms.
Usage: python bench/log.py [--entries N] [--seconds S] [--pg URL] [--skip-appends]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from log_append import GOALS as APPEND_GOALS
from log_append import run as run_appends
from sqlalchemy import insert

from ledger.canonical import canonical
from ledger.clock import utcnow
from ledger.config import Settings
from ledger.db import make_engine, transaction, upgrade
from ledger.keystore import create_keys, load_keyring
from ledger.provenance import checkpoints
from ledger.provenance.integrity import verify_database
from ledger.provenance.log import chain_hash
from ledger.provenance.merkle import leaf_hash
from ledger.provenance.models import LogEntry
from ledger.provenance.verify import GENESIS_CHAIN
from tests import dbutil

VERIFY_GOAL = 200_000
PROOF_P99_GOAL_MS = 5.0


def fill(url: str, n: int) -> None:
    """Write ``n`` entries shaped like real ones, in bulk (appending one by one is measured
    separately; here we only need a big log to verify and prove against)."""
    engine = make_engine(url)
    previous = GENESIS_CHAIN
    now = utcnow()
    batch: list[dict[str, object]] = []
    with transaction(engine) as session:
        for seq in range(n):
            entry = canonical(
                {
                    "v": 1,
                    "seq": seq,
                    "time": "2026-11-25T00:00:00.000000Z",
                    "type": "consent.recorded",
                    "actor": "3f1c2a9e-0000-4000-8000-000000000000",
                    "data": {"subject": f"{seq:064x}", "consent_id": f"c-{seq}", "purpose": "ai"},
                }
            )
            leaf = leaf_hash(entry)
            previous = chain_hash(previous, leaf)
            batch.append(
                {
                    "seq": seq,
                    "event_type": "consent.recorded",
                    "entry": entry,
                    "leaf_hash": leaf,
                    "chain_hash": previous,
                    "recorded_at": now,
                }
            )
            if len(batch) == 20_000:
                session.execute(insert(LogEntry), batch)
                batch.clear()
        if batch:
            session.execute(insert(LogEntry), batch)
    engine.dispose()


def pct(samples: list[float], p: float) -> float:
    return statistics.quantiles(samples, n=100)[int(p) - 1] if len(samples) > 1 else samples[0]


@contextmanager
def served(home: Path, url: str) -> Iterator[str]:
    """`ledger serve` in its own process, as in production, on a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "LEDGER_HOME": str(home),
        "LEDGER_DATABASE_URL": url,
        "LEDGER_CHECKPOINT_INTERVAL": "0",
    }
    exe = Path(sys.executable).with_name("ledger")
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def report_latency(backend: str, what: str, samples: list[float]) -> None:
    p50, p99 = pct(samples, 50), pct(samples, 99)
    ok = "yes" if p99 <= PROOF_P99_GOAL_MS else "NO"
    print(
        f"{backend:<11} {what}: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
        f"(goal p99 <= {PROOF_P99_GOAL_MS} ms)  {ok}"
    )


def bench_backend(backend: str, url: str, home: Path, entries: int) -> None:
    t = time.perf_counter()
    fill(url, entries)
    print(f"{backend:<11} filled {entries:,} entries in {time.perf_counter() - t:.1f} s")
    create_keys(home / "keys")
    settings = Settings(home=home, database_url=url, checkpoint_interval=0)
    keys = load_keyring(settings.keys_dir)
    engine = make_engine(url)
    tree = checkpoints.LogTree()
    with transaction(engine) as session:
        checkpoints.create(session, tree, keys, settings.log_origin)
    with transaction(engine) as session:
        t = time.perf_counter()
        report = verify_database(
            session, checkpoints.verifiers(keys, settings.log_origin), settings.log_origin
        )
        elapsed = time.perf_counter() - t
    assert report.ok, report.faults
    rate = report.entries / elapsed
    ok = "yes" if rate >= VERIFY_GOAL else "NO"
    print(
        f"{backend:<11} verify {report.entries:,} entries: {elapsed:.2f} s = "
        f"{rate:,.0f} entries/s (goal {VERIFY_GOAL:,})  {ok}"
    )

    rng = random.Random(7)
    calls = {
        "inclusion": lambda: tree.inclusion(rng.randrange(entries), entries),
        "consistency": lambda: tree.consistency(rng.randrange(1, entries), entries),
    }
    for kind, call in calls.items():
        samples = []
        for _ in range(5000):
            t = time.perf_counter()
            with transaction(engine) as session:
                tree.sync(session)
                call()
            samples.append((time.perf_counter() - t) * 1000)
        report_latency(backend, f"{kind} proof (service, with DB sync)", samples)

    with served(home, url) as base, httpx.Client(base_url=base) as client:
        client.get("/v1/log/proofs/inclusion", params={"index": 0})  # loads the tree once
        for kind in ("inclusion", "consistency"):
            samples = []
            for _ in range(2000):
                if kind == "inclusion":
                    params = {"index": rng.randrange(entries)}
                else:
                    params = {"first": rng.randrange(1, entries)}
                t = time.perf_counter()
                r = client.get(f"/v1/log/proofs/{kind}", params=params)
                samples.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
            report_latency(backend, f"{kind} proof (HTTP, ledger serve)", samples)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--skip-appends", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    targets = [("sqlite", dbutil.sqlite_url(tmp / "bench.db"), None)]
    try:
        pg = dbutil.create_pg_database(args.pg, prefix="ledger_bench")
        targets.append(("postgresql", pg, pg))
    except Exception as exc:
        print(f"postgresql: skipped ({type(exc).__name__})")
    try:
        for backend, url, _ in targets:
            if not args.skip_appends:
                scratch = (
                    dbutil.sqlite_url(tmp / "appends.db")
                    if backend == "sqlite"
                    else dbutil.create_pg_database(args.pg, prefix="ledger_bench_app")
                )
                upgrade(scratch)
                for writers in (1, 4):
                    rate = run_appends(scratch, writers, args.seconds)
                    goal = APPEND_GOALS.get((backend, writers))
                    verdict = (
                        "(no goal for one writer)"
                        if goal is None
                        else f"(goal {goal:,})  {'yes' if rate >= goal else 'NO'}"
                    )
                    print(f"{backend:<11} appends, {writers} writer(s): {rate:,.0f}/s {verdict}")
                if backend == "postgresql":
                    dbutil.drop_pg_database(scratch)
            upgrade(url)
            bench_backend(backend, url, tmp / f"home-{backend}", args.entries)
    finally:
        for _, _, pg_url in targets:
            if pg_url:
                dbutil.drop_pg_database(pg_url)


if __name__ == "__main__":
    main()
