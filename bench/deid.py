"""De-identification throughput: our engine vs dicognito on the same plain CT files.

Goal (docs/architecture.md §4): >= 150 files/s single core on plain CT, and faster than dicognito.
Both read from and write to disk. Usage: python bench/deid.py [--files N] [--size 512]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.images.deid import Deidentifier
from ledger.images.deid_files import deidentify_tree
from tests.images.dicom_factory import ct_dataset, write

GOAL = 150.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ledger-bench-deid-"))
    src = tmp / "in"
    study = None
    for i in range(args.files):
        ds = ct_dataset(f"MRN{i % 40:04d}", rows=args.size, seed=i, study_uid=study)
        write(ds, src / f"{i:05d}.dcm")
    size_mb = sum(p.stat().st_size for p in src.iterdir()) / 1e6
    print(f"{args.files} plain CT files, {args.size}x{args.size}, {size_mb:.0f} MB")

    engine = Deidentifier(b"b" * 32)
    t = time.perf_counter()
    summary = deidentify_tree(engine, src, tmp / "ours")
    ours = summary.processed / (time.perf_counter() - t)
    ok = "yes" if ours >= GOAL else "NO"
    print(f"ledger deid:  {ours:7.1f} files/s (goal >= {GOAL:.0f})  {ok}")

    out = tmp / "dicognito"
    shutil.copytree(src, out / "in")
    t = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dicognito",
            "--output-directory",
            str(out / "out"),
            str(out / "in"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        print(f"dicognito failed: {done.stderr.strip()[:300]}")
    else:
        theirs = args.files / elapsed
        print(f"dicognito:    {theirs:7.1f} files/s (process start included)")
        verdict = "yes" if ours > theirs else "NO"
        print(f"ratio:        {ours / theirs:7.2f}x dicognito (goal > 1)  {verdict}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
