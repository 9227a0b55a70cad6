"""``ledger deid IN OUT`` as a batch: every file accounted for with a reason, one bad file
never stops the run, burned-in text quarantined or masked, and the exit code."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner

from ledger import cpu
from ledger.cli import app
from ledger.images import deid_files, pixels
from tests.images.burned_in import BURNED_DATE, BURNED_ID, BURNED_NAME, draw_text, ultrasound
from tests.images.burned_in import need_tesseract as _need_tesseract
from tests.images.dicom_factory import ct_dataset, write

runner = CliRunner()


def _test_file(name: str) -> Path:
    path = pydicom.data.get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(str(path))


def _deid(src: Path, out: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any]:
    key = out.parent / "deid.key"
    r = runner.invoke(
        app,
        ["deid", str(src), str(out), "--key", str(key), "--create-key", "--json", *args],
        env=env,
    )
    assert "Traceback" not in r.output
    return r.exit_code, json.loads(r.output[r.output.index("{") :])


def _outcomes(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["file"]: f for f in summary["files"]}


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """A folder of what a user's disk holds: images, junk, a DICOMDIR, broken files."""
    src = tmp_path / "in"
    write(ct_dataset("MRN-1"), src / "ct" / "1.dcm")
    write(ct_dataset("MRN-2", burned_in="YES"), src / "ct" / "2.dcm")
    (src / "notes.txt").write_text("not dicom")
    with zipfile.ZipFile(src / "more.zip", "w") as archive:
        archive.write(src / "ct" / "1.dcm", "1.dcm")
    (src / "cut.dcm").write_bytes((src / "ct" / "1.dcm").read_bytes()[:1000])
    shutil.copy(_test_file("DICOMDIR"), src / "DICOMDIR")
    shutil.copy(_test_file("nested_priv_SQ.dcm"), src / "nested_priv_SQ.dcm")
    shutil.copy(_test_file("meta_missing_tsyntax.dcm"), src / "meta_missing_tsyntax.dcm")
    shutil.copy(_test_file("ExplVR_LitEndNoMeta.dcm"), src / "no-header.dcm")
    shutil.copy(_test_file("no_meta.dcm"), src / "no_meta.dcm")
    (src / "gone.dcm").symlink_to(src / "nowhere.dcm")  # listed, but cannot be opened
    return src


def test_a_messy_folder_is_accounted_for_file_by_file(messy: Path, tmp_path: Path) -> None:
    code, summary = _deid(messy, tmp_path / "out")
    assert code == 1  # some files failed; the others went through
    files = _outcomes(summary)
    assert summary["files_in"] == len(files) == 11
    expect = {
        "ct/1.dcm": ("written", []),
        "ct/2.dcm": ("quarantined", ["BurnedInAnnotation is YES"]),
        "notes.txt": ("skipped", [deid_files.NOT_DICOM]),
        "more.zip": ("skipped", [deid_files.NOT_DICOM]),
        "no_meta.dcm": ("skipped", [deid_files.NOT_DICOM]),
        "DICOMDIR": ("skipped", [deid_files.DICOMDIR]),
        "cut.dcm": ("failed", [deid_files.CORRUPT]),
        "nested_priv_SQ.dcm": ("failed", [deid_files.NOT_INSTANCE]),
        "meta_missing_tsyntax.dcm": ("failed", [deid_files.NOT_INSTANCE]),
        "gone.dcm": ("failed", [deid_files.UNREADABLE]),
        "no-header.dcm": ("written", []),
    }
    assert {k: (v["outcome"], v.get("reasons", [])) for k, v in files.items()} == expect
    assert files["more.zip"]["detail"].startswith("a zip archive")
    assert files["gone.dcm"]["detail"] == "No such file or directory"
    assert files["cut.dcm"]["detail"].startswith("truncated: pixel data has")
    assert files["nested_priv_SQ.dcm"]["detail"] == "no SOPClassUID and no SOPInstanceUID"
    assert files["no-header.dcm"]["note"] == deid_files.NO_PART10
    counts = {k: summary[k] for k in ("written", "quarantined", "skipped", "failed", "masked")}
    assert counts == {"written": 2, "quarantined": 1, "skipped": 4, "failed": 4, "masked": 0}
    assert summary["skipped_by_reason"] == {deid_files.NOT_DICOM: 3, deid_files.DICOMDIR: 1}
    assert summary["failed_by_reason"] == {
        deid_files.NOT_INSTANCE: 2,
        deid_files.CORRUPT: 1,
        deid_files.UNREADABLE: 1,
    }
    assert summary["edition"]
    out = tmp_path / "out"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["ct/1.dcm", "no-header.dcm", "quarantine/ct/2.dcm"]
    fixed = pydicom.dcmread(out / "no-header.dcm")  # now a Part 10 file
    assert fixed.file_meta.MediaStorageSOPClassUID == fixed.SOPClassUID
    assert fixed.PatientIdentityRemoved == "YES"


def test_the_printed_summary_names_reasons_and_the_exit_code(messy: Path, tmp_path: Path) -> None:
    key = tmp_path / "deid.key"
    r = runner.invoke(
        app, ["deid", str(messy), str(tmp_path / "out"), "--key", str(key), "--create-key"]
    )
    assert r.exit_code == 1
    text = " ".join(r.output.split())
    assert "Traceback" not in text
    assert "11 file(s)" in text
    assert "2 written" in text
    assert "4 failed, by reason" in text
    assert "nested_priv_SQ.dcm: no SOPClassUID and no SOPInstanceUID" in text
    assert "exit code 1" in text
    assert "force=True" not in text


def test_a_clean_folder_exits_zero(tmp_path: Path) -> None:
    write(ct_dataset("MRN-1"), tmp_path / "in" / "1.dcm")
    (tmp_path / "in" / "notes.txt").write_text("skipped, not failed")
    code, summary = _deid(tmp_path / "in", tmp_path / "out")
    assert code == 0
    assert (summary["written"], summary["skipped"], summary["failed"]) == (1, 1, 0)


def test_a_file_that_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    write(ct_dataset("MRN-1"), tmp_path / "in" / "a" / "1.dcm")
    write(ct_dataset("MRN-2"), tmp_path / "in" / "b" / "2.dcm")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("a file where the folder should go")
    code, summary = _deid(tmp_path / "in", out)
    assert code == 1
    files = _outcomes(summary)
    assert files["a/1.dcm"]["outcome"] == "failed"
    assert files["a/1.dcm"]["reasons"] == [deid_files.UNWRITABLE]
    assert files["b/2.dcm"]["outcome"] == "written"
    assert not list(out.rglob(".*.partial"))


def _ultrasounds(src: Path) -> None:
    text = [BURNED_NAME, BURNED_ID, BURNED_DATE]
    write(ultrasound([draw_text(480, 640, text)], patient_id="US-1"), src / "text.dcm")
    write(ultrasound([draw_text(480, 640, [])], patient_id="US-2"), src / "plain.dcm")


def test_burned_in_text_is_quarantined_by_default(tmp_path: Path) -> None:
    _need_tesseract()
    _ultrasounds(tmp_path / "in")
    code, summary = _deid(tmp_path / "in", tmp_path / "out")
    assert code == 0
    files = _outcomes(summary)
    assert files["text.dcm"]["outcome"] == "quarantined"
    assert files["text.dcm"]["reasons"] == [pixels.TEXT_FOUND]
    assert files["text.dcm"]["output"] == "quarantine/text.dcm"
    assert files["plain.dcm"]["outcome"] == "written"
    assert files["plain.dcm"]["pixels"] == "modality US: no text found by OCR in its one frame"
    assert summary["ocr_images"] == 2
    assert summary["burned_in"] == "quarantine"


def test_burned_in_text_is_masked_on_request(tmp_path: Path) -> None:
    program = _need_tesseract()
    _ultrasounds(tmp_path / "in")
    code, summary = _deid(tmp_path / "in", tmp_path / "out", "--burned-in", "mask")
    assert code == 0
    files = _outcomes(summary)
    assert files["text.dcm"]["outcome"] == "written"
    assert files["text.dcm"]["masked"] is True
    assert "OCR finds no text after masking" in files["text.dcm"]["pixels"]
    assert summary["masked"] == 1
    out = pydicom.dcmread(tmp_path / "out" / "text.dcm")
    words = {w.text.strip(",") for w in pixels.read_words(program, out.pixel_array, 0)}
    assert words & {"DOE", "JANE", "73210458", BURNED_DATE} == set()


def test_without_tesseract_images_at_risk_are_quarantined(tmp_path: Path) -> None:
    _ultrasounds(tmp_path / "in")
    write(ct_dataset("MRN-1"), tmp_path / "in" / "ct.dcm")
    env = {pixels.TESSERACT_ENV: str(tmp_path / "no-tesseract")}
    code, summary = _deid(tmp_path / "in", tmp_path / "out", "--burned-in", "mask", env=env)
    assert code == 0
    files = _outcomes(summary)
    for name in ("text.dcm", "plain.dcm"):
        assert files[name]["outcome"] == "quarantined"
        assert files[name]["reasons"] == [pixels.OCR_UNAVAILABLE]
    assert files["ct.dcm"]["outcome"] == "written"  # CT is not at risk: no OCR needed
    assert summary["quarantined_by_reason"] == {pixels.OCR_UNAVAILABLE: 2}


def test_worker_processes_write_the_same_files_and_summary(tmp_path: Path) -> None:
    from ledger.images.deid import Deidentifier

    src = tmp_path / "in"
    for i in range(deid_files.PARALLEL_FROM + 4):
        write(
            ct_dataset(f"MRN-{i % 3}", seed=i, burned_in="YES" if i == 5 else "NO"),
            src / f"{i:02d}.dcm",
        )
    (src / "notes.txt").write_text("not dicom")
    engine = Deidentifier(b"w" * 32)
    one = deid_files.deidentify_tree(engine, src, tmp_path / "one", jobs=1)
    ticks: list[int] = []
    two = deid_files.deidentify_tree(
        Deidentifier(b"w" * 32), src, tmp_path / "two", lambda: ticks.append(1), jobs=2
    )
    assert len(ticks) == len(two.files) == deid_files.PARALLEL_FROM + 5
    first, second = one.as_dict(), two.as_dict()
    for summary in (first, second):
        summary.pop("ocr_seconds")
    assert first == second
    for path in (tmp_path / "one").rglob("*.dcm"):
        assert (
            path.read_bytes()
            == (tmp_path / "two" / path.relative_to(tmp_path / "one")).read_bytes()
        )
    assert second["quarantined"] == 1


def test_the_default_jobs_are_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(cpu, "runnable", lambda: 1)  # this process alone
    assert deid_files.default_jobs() == min(cores, 8)
    monkeypatch.setattr(cpu, "runnable", lambda: cores + 1)  # every other core busy
    assert deid_files.default_jobs() == 1  # busy cores: one process, no workers
    monkeypatch.setattr(cpu, "runnable", lambda: None)  # unknown: every core counts
    assert deid_files.default_jobs() == min(cores, 8)
