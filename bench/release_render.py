"""Release rendering per file, in process: each file of a series rendered on its own
(``release_render.render_pieces``: decrypt, parse the header, de-identify, write, splice
the pixel data) against a series rendered from its first file (``render_reuse``, what
WADO-RS and zip downloads use), on the same stored files, with the bytes compared.

No goal of its own: it shows where ``bench/dicomweb.py``'s server time per instance goes.
Both run in one process with the allocator tuned as ``ledger serve`` tunes it
(``ledger/allocator.py``), alternating, ``--runs`` times; the fastest run counts.
Usage: python bench/release_render.py [--studies 12] [--per-study 10] [--size 512] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger import allocator
from ledger.access import release_render
from ledger.access.archive import Prepared
from ledger.access.render_reuse import SeriesRenderer
from ledger.images import synthetic
from ledger.images.deid import DEFAULT_OPTIONS, Deidentifier
from ledger.images.store import FilesystemStore, seal


def _studies(
    root: Path, studies: int, per_study: int, size: int
) -> tuple[FilesystemStore, list[list[Prepared]]]:
    store = FilesystemStore(root)
    rng = random.Random(11)
    out = []
    for s in range(studies):
        items = []
        for n in range(per_study):
            data = synthetic.instance(
                patient_id=f"R{s:04d}",
                issuer="urn:bench",
                modality="CT",
                body_part="CHEST",
                study_date=date(2024, 1, 1 + s % 28),
                study_uid=f"1.2.826.0.88.{s}",
                series_uid=f"1.2.826.0.88.{s}.1",
                number=n + 1,
                rng=rng,
                size=size,
            )
            key = AESGCM.generate_key(bit_length=256)
            address = hashlib.sha256(data).hexdigest()
            store.put(address, seal(key, address, data))
            items.append(Prepared(f"{s}.{n}", address, key))
        out.append(items)
    return store, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--per-study", type=int, default=10)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    allocator.tune()
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        store, studies = _studies(Path(tmp), args.studies, args.per_study, args.size)
        files = sum(len(s) for s in studies)
        engine = Deidentifier(b"b" * 32, DEFAULT_OPTIONS)

        def alone() -> None:
            for items in studies:
                for item in items:
                    release_render.render_pieces(store, engine, item)

        reused = 0

        def series() -> None:
            nonlocal reused
            for items in studies:
                renderer = SeriesRenderer(store, engine)
                for item in items:
                    renderer.render(item)
                reused += renderer.reused

        for items in studies:  # the same bytes both ways
            renderer = SeriesRenderer(store, engine)
            for item in items:
                a, b = renderer.render(item), release_render.render_pieces(store, engine, item)
                assert bytes(a[0]) + bytes(a[1]) == bytes(b[0]) + bytes(b[1]), item.uid
        times: dict[str, list[float]] = {"alone": [], "series": []}
        for _ in range(args.runs):
            for name, fn in (("alone", alone), ("series", series)):
                started = time.process_time()
                fn()
                times[name].append(time.process_time() - started)
        per = {name: min(t) / files * 1e3 for name, t in times.items()}
        print(
            f"{files} CT files ({args.studies} studies of {args.per_study}, "
            f"{args.size}x{args.size}); CPU per file, fastest of {args.runs} runs"
        )
        print(f"{'each file on its own:':34s}{per['alone']:7.3f} ms")
        print(
            f"{'a series from its first file:':34s}{per['series']:7.3f} ms "
            f"({reused // args.runs} of {files} files reused; {per['alone'] / per['series']:.1f}x)"
        )


if __name__ == "__main__":
    main()
