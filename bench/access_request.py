"""An access request over 1M images of 200k patients, end to end, with time per stage.

Goal (docs/architecture.md §4): <= 3 s on SQLite, <= 1.5 s on PostgreSQL. The set-up (consents
imported from CSV, 1M image index rows, a dataset over all of them) is not timed; the
request is: consent facts, classes, Cedar, manifest root, composition, storing, logging.
Usage: python bench/access_request.py [--subjects N] [--per-subject K] [--pg URL]
       [--only sqlite|postgresql] [--images 3000000]

``--images N`` prints the scale line instead: the request at 250k, 1M and 3M images (those
up to N), each set up afresh and requested in a process of its own, with its time and the
process's peak memory (goal: time linear in the images, peak <= 2 GB at 3M).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from consent_import import make_csv
from sqlalchemy import select

from ledger import wiring
from ledger.access import service
from ledger.access.schemas import AccessRequestCreate
from ledger.clock import utcnow
from ledger.config import Settings
from ledger.consent import csv_import
from ledger.consent.models import Subject
from ledger.db import bulk_insert, make_engine, snapshot, transaction, upgrade
from ledger.dbtypes import table_of
from ledger.images import datasets
from ledger.images.columns import Vault
from ledger.images.models import Image
from ledger.images.service import image_leaf
from ledger.images.store import FilesystemStore
from ledger.keystore import create_keys, load_keyring
from ledger.policy.engine import default_directory, load
from ledger.principals import service as principals
from ledger.principals.models import PrincipalKind, Role
from ledger.principals.schemas import PrincipalCreate
from ledger.provenance import merkle_workers
from tests import dbutil

GOALS = {"sqlite": 3.0, "postgresql": 1.5}
MODALITIES = [("CT", "CHEST"), ("CT", "HEAD"), ("MR", "HEAD"), ("CR", "CHEST"), ("DX", "HAND")]


def setup(url: str, home: Path, subjects: int, per_subject: int) -> tuple[str, str]:
    upgrade(url)
    create_keys(home / "keys")
    keys = load_keyring(home / "keys")
    engine = make_engine(url)
    rng = random.Random(5)
    with transaction(engine) as session:
        csv_import.import_rows(
            session, keys.pseudonym_key, csv_import.parse(make_csv(subjects, seed=3)), actor="bench"
        )
        people = list(session.execute(select(Subject.id)).scalars())  # type: ignore[call-overload]
        session.execute(Subject.__table__.update().values(site="north"))  # type: ignore[attr-defined]
        now = utcnow()
        batch = []
        for n, sid in enumerate(people):
            for k in range(per_subject):
                sha = hashlib.sha256(f"{n}:{k}".encode()).hexdigest()
                modality, part = rng.choice(MODALITIES)
                batch.append(
                    {
                        "id": str(uuid.UUID(int=n * 16 + k)),
                        "subject_id": sid,
                        "sha256": sha,
                        "leaf_hash": image_leaf(sha),
                        "modality": modality,
                        "body_part": part,
                        "study_date": date(2020 + k % 5, 1 + n % 12, 1),
                        "burned_in": "NO",
                        "manufacturer": rng.choice(["ACME", "Globex", "Initech"]),
                        "size_bytes": 500_000,
                        "created_at": now,
                    }
                )
                if len(batch) == 50_000:
                    bulk_insert(session, table_of(Image), batch)
                    batch.clear()
        bulk_insert(session, table_of(Image), batch)
        # Where the server keeps the dataset's packed columns: its object store.
        vault = Vault(FilesystemStore(Settings(home=home).objects_dir), keys.master_key)
        dataset = datasets.create(
            session, datasets.DatasetCreate(name="all", filter={}), actor="bench", vault=vault
        )
        pipeline = principals.create(
            session,
            PrincipalCreate(
                name="bench-pipeline", kind=PrincipalKind.pipeline, roles=[Role.pipeline]
            ),
            actor=None,
        )
    if engine.dialect.name == "postgresql":
        # What autovacuum does soon after a bulk load: without it the first scan of each
        # freshly loaded table also sets every row's hint bits, which the request would pay.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
            # And the checkpoint the load's WAL would trigger soon, so that its writes do
            # not land in the middle of the timed request.
            conn.exec_driver_sql("CHECKPOINT")
    engine.dispose()
    os.sync()  # likewise the kernel's write-back of the gigabyte just written
    return dataset.id, pipeline.id


def run(backend: str, url: str, home: Path, subjects: int, per_subject: int) -> None:
    t = time.perf_counter()
    dataset_id, pipeline_id = setup(url, home, subjects, per_subject)
    print(
        f"{backend:<11} set-up: {subjects:,} subjects, {subjects * per_subject:,} images "
        f"in {time.perf_counter() - t:.0f} s"
    )
    request(backend, url, home, dataset_id, pipeline_id)


def request(
    backend: str, url: str, home: Path, dataset_id: str, pipeline_id: str, *, quiet: bool = False
) -> dict[str, float]:
    """The timed request, cold then warm; returns the seconds of each."""
    took: dict[str, float] = {}
    settings = Settings(home=home, database_url=url)
    keys = load_keyring(home / "keys")
    ctx = service.Context(settings, keys, load(default_directory()), wiring.vault(settings, keys))
    merkle_workers.start()  # as the server does at start-up (LEDGER_HASH_WORKER)
    engine = make_engine(url)
    body = AccessRequestCreate(
        dataset_id=dataset_id,
        purpose="ai.training",
        justification="Benchmark: a training request over everything.",
    )
    for attempt in ("cold", "warm"):
        t = time.perf_counter()
        with transaction(engine) as session:
            request = service.create(session, ctx, body, requester=pipeline_id)
            stages = dict(request.evaluation["timings_ms"])
        total = took[attempt] = time.perf_counter() - t
        goal = GOALS[backend]
        if quiet:
            continue
        print(
            f"{backend:<11} access request ({attempt}): {total:.2f} s end to end "
            f"(goal <= {goal} s)  {'yes' if total <= goal else 'NO'}; eligible "
            f"{request.eligible_count:,}, excluded {request.excluded_count:,}, "
            f"{request.evaluation['classes']} classes"
        )
        print(
            f"{'':<11} stages (ms): "
            + ", ".join(f"{k} {v:,.0f}" for k, v in stages.items())
            + f", store+log {total * 1000 - sum(stages.values()):,.0f}"
        )
    with snapshot(engine):
        pass
    merkle_workers.stop()
    engine.dispose()
    return took


SCALE = (250_000, 1_000_000, 3_000_000)
PEAK_GOAL_MB = 2_048


def scale(backend: str, images: int, per_subject: int, pg: str) -> None:
    """The scale line: each size set up afresh here, requested in a child process whose
    peak resident memory is the request's (plus the interpreter and imports)."""
    rates = []
    for size in [n for n in SCALE if n <= images] or [images]:
        with tempfile.TemporaryDirectory(prefix="ledger-bench-ar-") as tmp:
            url = (
                dbutil.sqlite_url(Path(tmp) / "bench.db")
                if backend == "sqlite"
                else dbutil.create_pg_database(pg, prefix="ledger_bench_ar")
            )
            try:
                t = time.perf_counter()
                ids = setup(url, Path(tmp) / "home", size // per_subject, per_subject)
                made = time.perf_counter() - t
                child = subprocess.run(
                    [sys.executable, __file__, "--request-only", url, str(Path(tmp) / "home"),
                     *ids, backend],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
            finally:
                if backend != "sqlite":
                    dbutil.drop_pg_database(url)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        rates.append(size / result["cold"])
        peak = result["peak_mb"]
        print(
            f"{backend:<11} {size:>9,} images: cold {result['cold']:.2f} s, warm "
            f"{result['warm']:.2f} s, peak {peak:,.0f} MB"
            + (f" (goal <= {PEAK_GOAL_MB:,} MB) {'yes' if peak <= PEAK_GOAL_MB else 'NO'}"
               if size == SCALE[-1] else "")
            + f"; {size / result['cold'] / 1e3:,.0f}k images/s (set-up {made:.0f} s)",
            flush=True,
        )  # fmt: skip
    if len(rates) > 1:
        print(
            f"{backend:<11} images/s at the largest size / at the smallest: "
            f"{rates[-1] / rates[0]:.2f} (1.00 is linear)"
        )


def _request_only(argv: list[str]) -> None:
    url, home, dataset_id, pipeline_id, backend = argv
    took = request(backend, url, Path(home), dataset_id, pipeline_id, quiet=True)
    print(json.dumps({**took, "peak_mb": _own_peak_mb()}))


def _own_peak_mb() -> float:
    """This process's peak resident memory. Not ``getrusage``'s ``ru_maxrss``: Linux keeps
    it across ``execve``, so a child started by a parent that set up 3M images reports the
    parent's peak (``subprocess`` forks, or vforks, before it execs). ``VmHWM`` is the
    peak of this process's own address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    if sys.argv[1:2] == ["--request-only"]:
        _request_only(sys.argv[2:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=200_000)
    parser.add_argument("--per-subject", type=int, default=5)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one backend only")
    parser.add_argument("--images", type=int, help="the scale line, up to this many images")
    args = parser.parse_args()
    if args.images:
        for backend in ("sqlite", "postgresql"):
            if args.only in (None, backend):
                scale(backend, args.images, args.per_subject, args.pg)
        return
    # Gigabytes of SQLite database and tens of megabytes of columns: removed afterwards.
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory(prefix="ledger-bench-ar-") as tmp:
            url = dbutil.sqlite_url(Path(tmp) / "bench.db")
            run("sqlite", url, Path(tmp) / "home", args.subjects, args.per_subject)
    if args.only == "sqlite":
        return
    try:
        pg = dbutil.create_pg_database(args.pg, prefix="ledger_bench_ar")
    except Exception as exc:
        print(f"postgresql: skipped ({type(exc).__name__})")
        return
    try:
        with tempfile.TemporaryDirectory(prefix="ledger-bench-ar-") as tmp:
            run("postgresql", pg, Path(tmp) / "home", args.subjects, args.per_subject)
    finally:
        dbutil.drop_pg_database(pg)


if __name__ == "__main__":
    main()
