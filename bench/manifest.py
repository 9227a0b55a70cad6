"""Dataset manifest root over 1M image rows.

Goal (docs/architecture.md §4): <= 0.5 s for the root over 1M images. Printed: the Merkle
root over 1M stored leaves (the part the goal names), and the whole step a dataset
creation runs on SQLite: read 1M leaves in order from the index, then the root.
Usage: python bench/manifest.py [--images N]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from ledger.clock import utcnow
from ledger.consent.models import Subject
from ledger.db import bulk_insert, make_engine, snapshot, transaction, upgrade
from ledger.dbtypes import table_of
from ledger.images.models import Image
from ledger.images.service import image_leaf
from ledger.provenance.merkle import root_hash
from tests import dbutil

GOAL = 0.5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1_000_000)
    args = parser.parse_args()
    url = dbutil.sqlite_url(Path(tempfile.mkdtemp()) / "manifest.db")
    upgrade(url)
    engine = make_engine(url)
    now = utcnow()
    t = time.perf_counter()
    with transaction(engine) as session:
        bulk_insert(
            session,
            table_of(Subject),
            [
                {
                    "id": "s",
                    "pseudonym": b"\x00" * 32,
                    "sex": None,
                    "birth_year": None,
                    "site": None,
                    "created_at": now,
                    "erased_at": None,
                }
            ],
        )
        batch = []
        for i in range(args.images):
            sha = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
            batch.append(
                {
                    "id": str(uuid.UUID(int=i)),
                    "subject_id": "s",
                    "sha256": sha,
                    "leaf_hash": image_leaf(sha),
                    "size_bytes": 1,
                    "created_at": now,
                    "modality": "CT",
                }
            )
            if len(batch) == 50_000:
                bulk_insert(session, table_of(Image), batch)
                batch.clear()
        bulk_insert(session, table_of(Image), batch)
    print(f"set-up: {args.images:,} image rows in {time.perf_counter() - t:.1f} s")

    with snapshot(engine) as session:
        t = time.perf_counter()
        leaves = list(
            session.execute(select(Image.leaf_hash).order_by(Image.leaf_hash)).scalars()  # type: ignore[arg-type]
        )
        t_read = time.perf_counter() - t
    t = time.perf_counter()
    root = root_hash(leaves)
    t_root = time.perf_counter() - t
    ok = "yes" if t_root <= GOAL else "NO"
    print(
        f"root over {len(leaves):,} leaves: {t_root:.3f} s (goal <= {GOAL} s)  {ok}  "
        f"root {root.hex()[:16]}…"
    )
    print(
        f"with reading the sorted leaves from SQLite: {t_read + t_root:.3f} s (read {t_read:.3f} s)"
    )


if __name__ == "__main__":
    main()
