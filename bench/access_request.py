"""An access request over 1M images of 200k patients, end to end, with time per stage.

Goal (docs/architecture.md §4): <= 3 s on SQLite, <= 1.5 s on PostgreSQL. The set-up (consents
imported from CSV, 1M image index rows, a dataset over all of them) is not timed; the
request is: consent facts, classes, Cedar, manifest root, composition, storing, logging.
Usage: python bench/access_request.py [--subjects N] [--per-subject K] [--pg URL]
       [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
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
        total = time.perf_counter() - t
        goal = GOALS[backend]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=200_000)
    parser.add_argument("--per-subject", type=int, default=5)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one backend only")
    args = parser.parse_args()
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
