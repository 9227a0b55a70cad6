"""De-identify files and folders: the part of ``ledger deid`` that is not printing.

Every file under the input ends in exactly one outcome, with a plain reason; one bad file
never stops the batch:

* **written**: de-identified to the same relative path under the output folder (and
  **masked** too when burned-in text was masked in its pixels);
* **quarantined**: de-identified like the rest but written under ``OUT/quarantine/`` for
  a person to review, because its pixels may show text (``BurnedInAnnotation`` YES, a
  secondary capture not marked NO, or OCR found text: ``ledger/images/pixels.py``);
* **skipped**: not something to de-identify: not DICOM at all, or a DICOMDIR (a media
  index that lists other files and holds their patients' names: never copied);
* **failed**: DICOM we could not read, parse, de-identify or write; nothing is left
  under the output folder for it.

A dataset without a Part 10 header (no preamble and ``DICM``) is read anyway when it
parses as a DICOM instance, and written with a proper header; when it does not parse it
is skipped as not DICOM, by name.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from ledger import cpu
from ledger.images import pixels
from ledger.images.deid import Deidentifier
from ledger.images.deid_options import BurnedIn
from ledger.images.deid_report import FileReport as FileReport
from ledger.images.deid_report import Outcome as Outcome
from ledger.images.deid_report import Summary as Summary
from ledger.images.part10 import write_part10
from ledger.images.validation import pixel_length_problem

QUARANTINE = "quarantine"

# Reasons, worded once so the summary can count files by reason.
NOT_DICOM = "not a DICOM file"
DICOMDIR = "DICOMDIR (a media index, not an image: de-identify the files it lists)"
UNREADABLE = "cannot read the file"
CORRUPT = "corrupt DICOM file"
NOT_INSTANCE = "DICOM file without an instance to de-identify"
DEID_ERROR = "de-identification error"
UNWRITABLE = "cannot write the de-identified file"
NO_PART10 = "read without a Part 10 header"
UNEXPECTED = "unexpected error (please report it)"


def files_under(source: Path) -> Iterator[Path]:
    if source.is_file():
        yield source
        return
    for root, dirs, names in os.walk(source):
        dirs.sort()
        for name in sorted(names):
            yield Path(root) / name


def _plain(exc: BaseException) -> str:
    """An exception in words for a person: its message on one line, no traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    # pydicom puts the element's traceback into the message it re-raises: not for a person
    text = " ".join(str(exc).split("Traceback (most recent call last)")[0].split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


class _Refused(Exception):
    def __init__(self, outcome: Outcome, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.outcome, self.reason, self.detail = outcome, reason, detail


def read(src: Path) -> tuple[Dataset, str | None]:
    """The dataset in ``src`` ready to de-identify and write, and a note when it had no
    Part 10 header; ``_Refused`` (skipped or failed, with the reason) otherwise."""
    try:
        handle = src.open("rb")  # opened once: peeked at, then parsed
    except OSError as exc:
        raise _Refused(Outcome.failed, UNREADABLE, _plain(exc)) from exc
    with handle:
        try:
            head = handle.read(132)
            handle.seek(0)
        except OSError as exc:
            raise _Refused(Outcome.failed, UNREADABLE, _plain(exc)) from exc
        ds, note = _parse(handle, head)
    meta = getattr(ds, "file_meta", None)
    media_class = str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else ""
    if media_class == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        raise _Refused(Outcome.skipped, DICOMDIR)
    missing = [k for k in ("SOPClassUID", "SOPInstanceUID") if not str(ds.get(k, "") or "")]
    if missing:
        raise _Refused(Outcome.failed, NOT_INSTANCE, f"no {' and no '.join(missing)}")
    _complete_meta(ds)
    problem = pixel_length_problem(ds)
    if problem is not None:
        raise _Refused(Outcome.failed, CORRUPT, problem)
    return ds, note


def _parse(handle: BinaryIO, head: bytes) -> tuple[Dataset, str | None]:
    if head[128:132] == b"DICM":
        try:
            return dcmread(handle), None
        except Exception as exc:  # pydicom raises many types on corrupt input
            raise _Refused(Outcome.failed, CORRUPT, _plain(exc)) from exc
    what = _not_dicom_hint(head)
    try:
        ds = dcmread(handle, force=True)
        _touch(ds)
    except Exception as exc:
        raise _Refused(Outcome.skipped, NOT_DICOM, what) from exc
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise _Refused(Outcome.skipped, NOT_DICOM, what)
    return ds, NO_PART10


def _not_dicom_hint(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive: unpack it to de-identify the files inside"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file: unpack it to de-identify what it holds"
    return "no Part 10 header, and not a DICOM dataset without one"


def _touch(ds: Dataset) -> None:
    """Convert every element, nested ones too: a corrupt value raises here. A dataset
    read without a Part 10 header is touched at once (is it DICOM at all?); a Part 10
    file only when the engine fails on it, to tell a corrupt file from an engine error."""
    for _ in ds.iterall():
        pass


def _complete_meta(ds: Dataset) -> None:
    """File meta a Part 10 file needs: the transfer syntax the data was read in, and the
    media storage SOP class (the engine sets the instance UID it remaps)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    if not str(meta.get("TransferSyntaxUID", "") or ""):
        implicit, little = ds.original_encoding
        if implicit:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian
        elif little is False:
            meta.TransferSyntaxUID = ExplicitVRBigEndian
        else:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword, value in (
        ("MediaStorageSOPClassUID", ds.SOPClassUID),
        ("MediaStorageSOPInstanceUID", ds.SOPInstanceUID),
    ):
        if meta.get(keyword) != value:  # setting a UID validates it: only when it differs
            setattr(meta, keyword, value)


def deidentify_file(
    engine: Deidentifier,
    src: Path,
    dst_root: Path,
    rel: Path,
    summary: Summary,
    burned_in: BurnedIn = BurnedIn.quarantine,
) -> FileReport:
    """De-identify one file; its report is appended to ``summary`` and returned."""
    report = FileReport(file=rel.as_posix(), outcome=Outcome.written)
    summary.files.append(report)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings about odd input: outcomes say it
        try:
            _deidentify(engine, src, dst_root, rel, summary, burned_in, report)
        except _Refused as refused:
            report.outcome = refused.outcome
            report.reasons = [refused.reason]
            report.detail = refused.detail
            report.output = None
        except Exception as exc:  # a bug of ours must not stop the batch either
            report.outcome = Outcome.failed
            report.reasons = [UNEXPECTED]
            report.detail = _plain(exc)
            report.output = None
    return report


def _deidentify(
    engine: Deidentifier,
    src: Path,
    dst_root: Path,
    rel: Path,
    summary: Summary,
    burned_in: BurnedIn,
    report: FileReport,
) -> None:
    ds, report.note = read(src)
    try:
        result = engine.apply(ds)
    except Exception as exc:
        _diagnose(src)
        raise _Refused(Outcome.failed, DEID_ERROR, _plain(exc)) from exc
    reasons = list(result.reasons) if result.quarantined else []
    if not reasons:
        check = pixels.check(ds, burned_in)
        if check.at_risk is not None:
            report.pixels = check.decision()
        if check.frames:
            summary.ocr_images += 1
            summary.ocr_seconds += check.seconds
        if check.quarantine is not None:
            reasons.append(check.quarantine)
        report.masked = check.masked > 0 and check.quarantine is None
    target = dst_root / (Path(QUARANTINE) / rel if reasons else rel)
    try:
        _write(ds, target)
    except _Refused:
        _diagnose(src)
        raise
    report.output = target.relative_to(dst_root).as_posix()
    if reasons:
        report.outcome = Outcome.quarantined
        report.reasons = reasons
    summary.removed += result.removed
    summary.replaced += result.replaced
    summary.uids += result.uids


def _diagnose(src: Path) -> None:
    """After the engine or the writer failed on ``src``: ``_Refused`` as a corrupt file
    when one of its values cannot be read at all, else nothing (the failure stands)."""
    try:
        _touch(dcmread(src, force=True))
    except Exception as exc:
        raise _Refused(Outcome.failed, CORRUPT, _plain(exc)) from exc


def _write(ds: Dataset, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_part10(ds, tmp)
        tmp.replace(target)  # no fsync: see write_part10
    except Exception as exc:  # disk full, permissions, a value pydicom cannot encode
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise _Refused(Outcome.failed, UNWRITABLE, _plain(exc)) from exc


# The worker processes' engine, output folder and burned-in mode: set in the parent just
# before it forks them, so they inherit it rather than receive it pickled.
_WORKER: tuple[Deidentifier, Path, BurnedIn] | None = None
PARALLEL_FROM = 16  # files: fewer are done in the calling process


def _work(item: tuple[Path, Path]) -> tuple[FileReport, Summary]:
    assert _WORKER is not None
    engine, target, burned_in = _WORKER
    part = Summary()
    report = deidentify_file(engine, item[0], target, item[1], part, burned_in)
    part.files = []
    return report, part


def default_jobs() -> int:
    """Worker processes for a batch: one per idle core, up to 8, where processes can fork.

    Measured with ``bench/deid.py`` on a 2-core machine: with both cores idle, two workers
    run a batch about 1.6 times as fast as one process; with other work keeping the cores
    busy (load 5-7), two ran it slower than one (same CPU time, more waiting for a core).
    So the default counts the cores idle now: the cores less the other processes running
    at this moment (``/proc/loadavg``'s runnable count, which, unlike the load average,
    does not remember the last minute). ``--jobs N`` overrides it."""
    if not hasattr(os, "fork"):  # as multiprocessing decides whether it can fork
        return 1
    running = cpu.runnable()
    others = 0 if running is None else max(0, running - 1)  # this process is one of them
    return max(1, min(cpu.cores() - others, 8))


def deidentify_tree(
    engine: Deidentifier,
    source: Path,
    target: Path,
    progress: Callable[[], None] | None = None,
    *,
    burned_in: BurnedIn = BurnedIn.quarantine,
    jobs: int = 1,
) -> Summary:
    """Every file under ``source`` to the same relative path under ``target``; images that
    may show burned-in text go under ``target/quarantine/`` for a person to review (or are
    masked, with ``burned_in`` mask, when OCR finds the text).

    With ``jobs`` > 1 (and at least ``PARALLEL_FROM`` files) the files are shared among
    that many forked worker processes, each with a copy of ``engine``: the keyed
    pseudonyms, UIDs and date shifts are the same in every process, and the summary lists
    the files in the same order as one process would."""
    global _WORKER
    if target.resolve().is_relative_to(source.resolve()) and source.is_dir():
        raise ValueError("the output folder must not be inside the input folder")
    summary = Summary()
    items = [
        (path, Path(path.name) if source.is_file() else path.relative_to(source))
        for path in files_under(source)
    ]
    if jobs <= 1 or len(items) < PARALLEL_FROM or not hasattr(os, "fork"):
        for path, rel in items:
            deidentify_file(engine, path, target, rel, summary, burned_in)
            if progress is not None:
                progress()
        return summary
    _WORKER = (engine, target, burned_in)
    try:
        import multiprocessing  # only for a batch that forks: one process never needs it

        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            chunk = max(1, min(8, len(items) // (jobs * 8)))
            for report, part in pool.imap(_work, items, chunksize=chunk):
                summary.files.append(report)
                summary.removed += part.removed
                summary.replaced += part.replaced
                summary.uids += part.uids
                summary.ocr_images += part.ocr_images
                summary.ocr_seconds += part.ocr_seconds
                if progress is not None:
                    progress()
    finally:
        _WORKER = None
    return summary
