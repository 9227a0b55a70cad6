"""``ledger images import`` (folders, zips, resume), ``ledger datasets``, ``subjects erase``."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from ledger.cli import app
from ledger.config import Settings
from tests.images.dicom_factory import ct_dataset, write

runner = CliRunner()


def _run(settings: Settings, *args: str) -> tuple[int, str]:
    r = runner.invoke(
        app,
        [*args, "--home", str(settings.home)],
        env={"LEDGER_DATABASE_URL": settings.resolved_database_url},
    )
    return r.exit_code, r.output


def test_import_folder_and_zip_then_resume_dataset_and_erase(
    settings: Settings, tmp_path: Path
) -> None:
    src = tmp_path / "archive"
    for i in range(3):
        write(ct_dataset(f"P{i}", seed=i, modality="CT" if i < 2 else "MR"), src / f"{i}.dcm")
    with zipfile.ZipFile(src / "more.zip", "w") as zf:
        zf.write(src / "0.dcm", "copy-of-0.dcm")
        write(ct_dataset("P9", seed=9), tmp_path / "z.dcm")
        zf.write(tmp_path / "z.dcm", "nested/z.dcm")
    (src / "readme.txt").write_text("not an image")
    code, out = _run(settings, "images", "import", str(src), "--json")
    assert code == 1, out  # the text file fails; everything else is in
    report = json.loads(out)
    assert report["imported"] == 4
    assert report["duplicates"] == ["more.zip!copy-of-0.dcm"]
    assert [f["file"] for f in report["failed"]] == ["readme.txt"]
    code, out = _run(settings, "images", "import", str(src / "0.dcm"), "--json")
    assert json.loads(out)["duplicates"] == ["0.dcm"]  # resume: nothing stored twice

    code, out = _run(settings, "datasets", "create", "--name", "ct", "--modality", "CT", "--json")
    assert code == 0, out
    made = json.loads(out)
    assert made["image_count"] == 3
    code, out = _run(settings, "datasets", "show", made["id"], "--manifest", "--json")
    assert len(json.loads(out)["items"]) == 3
    code, out = _run(settings, "datasets", "create", "--name", "none", "--modality", "PT")
    assert code == 1

    code, out = _run(
        settings, "subjects", "find", "--issuer", settings.default_issuer, "--patient-id", "P2"
    )
    subject = out.strip()
    code, out = _run(settings, "subjects", "erase", subject, "--yes", "--json")
    assert code == 0, out
    assert json.loads(out)["images"] == 1
    code, out = _run(settings, "audit", "verify")
    assert code == 0, out


def test_cli_refuses_missing_paths_and_bad_dates(settings: Settings, tmp_path: Path) -> None:
    code, out = _run(settings, "images", "import", str(tmp_path / "nowhere"))
    assert code == 2
    assert "does not exist" in " ".join(out.split())  # the message wraps at the terminal width
    code, out = _run(settings, "datasets", "create", "--name", "x", "--from", "2024-13-40")
    assert code == 2
    code, out = _run(
        settings, "datasets", "create", "--name", "x", "--from", "2024-02-01", "--to", "2024-01-01"
    )
    assert code == 2
    assert "before" in out
    r = runner.invoke(app, ["deid", str(tmp_path / "nowhere"), str(tmp_path / "out")])
    assert r.exit_code == 2
    assert "does not exist" in " ".join(r.output.split())


def test_import_names_the_attribute_of_a_refused_file_and_stores_nothing_of_it(
    settings: Settings, tmp_path: Path
) -> None:
    src = tmp_path / "archive"
    write(ct_dataset("P1", seed=1), src / "good.dcm")
    bad = ct_dataset("P2", seed=2)
    bad.SOPInstanceUID = "1.2.3/../../x"
    write(bad, src / "bad-uid.dcm")
    no_study = ct_dataset("P3", seed=3)
    del no_study.StudyInstanceUID
    write(no_study, src / "no-study.dcm")
    code, out = _run(settings, "images", "import", str(src), "--json")
    assert code == 1, out
    report = json.loads(out)
    assert report["imported"] == 1
    failed = {f["file"]: f["reason"] for f in report["failed"]}
    assert set(failed) == {"bad-uid.dcm", "no-study.dcm"}
    assert "SOPInstanceUID (0008,0018)" in failed["bad-uid.dcm"]
    assert "StudyInstanceUID (0020,000D) is missing" in failed["no-study.dcm"]
    assert report["subjects_created"] == 1
    assert sum(1 for p in settings.objects_dir.rglob("*") if p.is_file()) == 1
