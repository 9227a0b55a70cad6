"""De-identification: the commands a user runs, ``ledger deid`` against ``python -m
dicognito``, on the same plain CT files of one study, process start included.

Goals (docs/architecture.md §4): the engine alone >= 150 files/s on one core; the
``ledger deid IN OUT`` command at least as fast as ``python -m dicognito`` on the same
files (ratio >= 1.0). Plain CT is not at risk of burned-in text, so no OCR runs there; the
OCR cost per image at risk is measured apart, on deid-data's ultrasounds (the dev extra
installs them) or, without them, on a synthetic one.

``ledger deid`` runs as a user runs it (worker processes: one per idle core, up to 8; see
``deid_files.default_jobs``) and with
``--jobs 1`` (one process, like dicognito). Both start from bytecode, as an installed
package does (``_compile_ledger``); the start-up of each is printed beside the floor it
shares with dicognito, ``python -c "import pydicom"``. Each command runs ``--runs`` times,
round-robin (load from elsewhere on the machine falls on all alike), each run on a fresh
copy of the input; the median counts. On a machine whose cores are busy with other work,
worker processes have nothing to run on: read the figures with the load beside them.
Usage: python bench/deid.py [--files 300] [--size 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pydicom

from ledger.images import pixels
from ledger.images.deid import Deidentifier
from ledger.images.deid_files import deidentify_tree
from tests.images.dicom_factory import ct_dataset, write

ENGINE_GOAL = 150.0
RATIO_GOAL = 1.0


def _ledger() -> list[str]:
    script = Path(sys.executable).with_name("ledger")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ledger"]


def _compile_ledger() -> None:
    """Bytecode for the ledger package, as ``pip install`` writes it for an installed one
    (dicognito's is in site-packages): a checkout run with PYTHONDONTWRITEBYTECODE set
    would otherwise compile every changed module at every start."""
    import compileall

    compileall.compile_dir(Path(__file__).resolve().parent.parent / "ledger", quiet=1)


CPU: dict[str, list[float]] = {}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and its workers
    return usage.ru_utime + usage.ru_stime


def _timed(argv: list[str], name: str = "") -> float:
    started, cpu = time.perf_counter(), _cpu()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed: {done.stderr.strip()[-300:]}")
    CPU.setdefault(name, []).append(_cpu() - cpu)
    return elapsed


def commands(src: Path, tmp: Path, runs: int, key: Path) -> dict[str, float]:
    """Median seconds of each command over ``runs`` round-robin runs."""
    times: dict[str, list[float]] = {
        "ledger deid": [],
        "ledger deid --jobs 1": [],
        "python -m dicognito": [],
    }
    for run in range(runs):
        out = tmp / f"ledger-{run}"
        times["ledger deid"].append(
            _timed([*_ledger(), "deid", str(src), str(out), "--key", str(key)], "ledger deid")
        )
        shutil.rmtree(out, ignore_errors=True)
        one = [*_ledger(), "deid", str(src), str(out), "--key", str(key), "--jobs", "1"]
        times["ledger deid --jobs 1"].append(_timed(one, "ledger deid --jobs 1"))
        theirs = tmp / f"dicognito-{run}"
        shutil.copytree(src, theirs / "in")  # dicognito's input is a copy: same bytes
        times["python -m dicognito"].append(
            _timed(
                [
                    sys.executable,
                    "-m",
                    "dicognito",
                    "--output-directory",
                    str(theirs / "out"),
                    str(theirs / "in"),
                ],
                "python -m dicognito",
            )
        )
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(theirs, ignore_errors=True)
    return {name: statistics.median(values) for name, values in times.items()}


def _at_risk_images(tmp: Path) -> list[tuple[str, Path]]:
    try:
        from importlib import resources

        root = Path(str(resources.files("deid_data"))) / "data" / "ultrasounds"
        names = ["RGB_IMAGE.dcm"]
        found = [(n, root / n) for n in names if (root / n).exists()]
        cine = root / "RGB_CINE.zip"
        if cine.exists():
            import zipfile

            with zipfile.ZipFile(cine) as archive:
                archive.extractall(tmp / "cine")
            found.append(("RGB_CINE.dcm (51 frames, 3 read)", tmp / "cine" / "RGB_CINE.dcm"))
        if found:
            return found
    except ModuleNotFoundError:
        pass
    from tests.images.burned_in import draw_text, ultrasound

    path = write(ultrasound([draw_text(768, 1024, ["DOE, JANE", "MRN 1234"])]), tmp / "us.dcm")
    return [("synthetic 1024x768 ultrasound", path)]


def ocr_cost(tmp: Path) -> None:
    if pixels.tesseract() is None:
        print("OCR per image at risk: no tesseract program (install tesseract-ocr)")
        return
    for name, path in _at_risk_images(tmp):
        ds = pydicom.dcmread(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check = pixels.check(ds)
        per_frame = check.seconds / max(len(check.frames), 1)
        print(
            f"{'OCR per image at risk:':26s}{check.seconds:7.2f} s  {name}  "
            f"({per_frame:.2f} s per frame read; {check.quarantine or 'no text'})"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    tmp = Path(tempfile.mkdtemp(prefix="ledger-bench-deid-"))
    try:
        src = tmp / "in"
        study = pydicom.uid.generate_uid()
        for i in range(args.files):
            write(
                ct_dataset("MRN0001", rows=args.size, seed=i, study_uid=study), src / f"{i:05d}.dcm"
            )
        size_mb = sum(p.stat().st_size for p in src.iterdir()) / 1e6
        print(
            f"{args.files} plain CT files of one study, {args.size}x{args.size}, {size_mb:.0f} MB"
        )

        engine = Deidentifier(b"b" * 32)
        started = time.perf_counter()
        summary = deidentify_tree(engine, src, tmp / "engine")
        rate = summary.written / (time.perf_counter() - started)
        ok = "yes" if rate >= ENGINE_GOAL else "NO"
        print(
            f"{'engine alone, one core:':26s}{rate:7.1f} files/s (goal >= {ENGINE_GOAL:.0f})  {ok}"
        )
        shutil.rmtree(tmp / "engine")

        key = tmp / "deid.key"
        key.write_bytes(os.urandom(32))
        _compile_ledger()
        _timed([*_ledger(), "deid", str(src), str(tmp / "warm"), "--key", str(key)])
        shutil.rmtree(tmp / "warm")
        medians = commands(src, tmp, args.runs, key)
        theirs = args.files / medians["python -m dicognito"]
        for name in ("ledger deid", "ledger deid --jobs 1", "python -m dicognito"):
            label = f"{name}:" if name != "ledger deid" else "ledger deid (default jobs):"
            rate = args.files / medians[name]
            cpu = statistics.median(CPU[name])
            print(
                f"{label:26s}{rate:7.1f} files/s ({medians[name]:.2f} s, process start "
                f"included; {cpu:.2f} s of CPU)"
            )
        for name in ("ledger deid", "ledger deid --jobs 1"):
            ratio = args.files / medians[name] / theirs
            verdict = "yes" if ratio >= RATIO_GOAL else "NO"
            label = f"ratio, {name}:"
            print(f"{label:26s}{ratio:7.2f}x dicognito (goal >= {RATIO_GOAL:.1f})  {verdict}")
        (tmp / "empty").mkdir()
        empty = [*_ledger(), "deid", str(tmp / "empty"), str(tmp / "none"), "--key", str(key)]
        floor = [sys.executable, "-c", "import pydicom"]
        dicognito_empty = [sys.executable, "-m", "dicognito", "-o", str(tmp / "none2")]
        starts: dict[str, list[float]] = {"ledger": [], "dicognito": [], "pydicom": []}
        for _ in range(5):
            starts["ledger"].append(_timed(empty))
            starts["dicognito"].append(_timed([*dicognito_empty, str(tmp / "empty")]))
            starts["pydicom"].append(_timed(floor))
        start = {name: statistics.median(values) for name, values in starts.items()}
        print(
            f"{'start-up (empty folder):':26s}{start['ledger']:7.2f} s ledger deid, "
            f"{start['dicognito']:.2f} s dicognito, {start['pydicom']:.2f} s import pydicom"
        )
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
        ocr_cost(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
