"""Log appends per second, one transaction per append, with 1 and 4 writer processes.

Goal (docs/architecture.md §4): >= 1,000/s on SQLite, >= 500/s on PostgreSQL with 4 writers.
Usage: python bench/log_append.py [--pg URL] [--seconds N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.db import make_engine, transaction, upgrade
from ledger.provenance import log
from tests import dbutil

# The goal is stated for 4 concurrent writers; 1 writer is shown for comparison only.
GOALS = {("sqlite", 4): 1000, ("postgresql", 4): 500}


def _writer(url: str, seconds: float, start: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    engine = make_engine(url)
    while time.time() < start:
        time.sleep(0.001)
    n = 0
    end = start + seconds
    try:
        while time.time() < end:
            with transaction(engine) as session:
                log.append(session, "bench.append", {"n": n, "payload": "x" * 64})
            n += 1
    except Exception as exc:  # a failed writer must not hang the parent
        print(f"writer failed: {exc!r}", file=sys.stderr)
    finally:
        engine.dispose()
        out.put(n)


def run(url: str, writers: int, seconds: float) -> float:
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    start = time.time() + 1.0
    procs = [mp.Process(target=_writer, args=(url, seconds, start, out)) for _ in range(writers)]
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    targets: list[tuple[str, str, str | None]] = []
    tmp = Path(tempfile.mkdtemp())
    targets.append(("sqlite", dbutil.sqlite_url(tmp / "bench.db"), None))
    try:
        pg = dbutil.create_pg_database(args.pg, prefix="ledger_bench")
        targets.append(("postgresql", pg, pg))
    except Exception as exc:
        print(f"postgresql: skipped ({type(exc).__name__})")
    print(f"{'backend':<11} {'writers':>7} {'appends/s':>10} {'goal':>6}  ok")
    try:
        for backend, url, _ in targets:
            upgrade(url)
            for writers in (1, 4):
                rate = run(url, writers, args.seconds)
                goal = GOALS.get((backend, writers))
                ok = "-" if goal is None else "yes" if rate >= goal else "NO"
                print(f"{backend:<11} {writers:>7} {rate:>10,.0f} {goal or '-':>6}  {ok}")
    finally:
        for _, _, pg_url in targets:
            if pg_url:
                dbutil.drop_pg_database(pg_url)


if __name__ == "__main__":
    main()
