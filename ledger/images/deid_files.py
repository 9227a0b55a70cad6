"""De-identify files and folders: the part of ``ledger deid`` that is not printing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from ledger.images.deid import Deidentifier

QUARANTINE = "quarantine"


@dataclass
class Summary:
    processed: int = 0
    quarantined: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    removed: int = 0
    replaced: int = 0
    uids: int = 0


def files_under(source: Path) -> Iterator[Path]:
    if source.is_file():
        yield source
        return
    for root, dirs, names in os.walk(source):
        dirs.sort()
        for name in sorted(names):
            yield Path(root) / name


def deidentify_file(
    engine: Deidentifier, src: Path, dst_root: Path, rel: Path, summary: Summary
) -> None:
    try:
        ds = dcmread(src)
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        summary.skipped.append({"file": str(rel), "reason": f"not readable as DICOM: {exc}"})
        return
    if "PixelData" not in ds and "SOPClassUID" not in ds:
        summary.skipped.append({"file": str(rel), "reason": "no DICOM dataset in the file"})
        return
    result = engine.apply(ds)
    target = dst_root / (Path(QUARANTINE) / rel if result.quarantined else rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial")
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(target)
    summary.processed += 1
    summary.removed += result.removed
    summary.replaced += result.replaced
    summary.uids += result.uids
    if result.quarantined:
        summary.quarantined.append(f"{rel}: {'; '.join(result.reasons)}")


def deidentify_tree(
    engine: Deidentifier,
    source: Path,
    target: Path,
    progress: Callable[[], None] | None = None,
) -> Summary:
    """Every file under ``source`` to the same relative path under ``target``; images that
    may show burned-in text go under ``target/quarantine/`` for a person to review."""
    if target.resolve().is_relative_to(source.resolve()) and source.is_dir():
        raise ValueError("the output folder must not be inside the input folder")
    summary = Summary()
    for path in files_under(source):
        rel = Path(path.name) if source.is_file() else path.relative_to(source)
        deidentify_file(engine, path, target, rel, summary)
        if progress is not None:
            progress()
    return summary
