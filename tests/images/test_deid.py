"""De-identification on generated DICOM with PHI planted everywhere the table names."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.sequence import Sequence
from pydicom.uid import SecondaryCaptureImageStorage
from typer.testing import CliRunner

from ledger.cli import app
from ledger.images.deid import DEFAULT_OPTIONS, Deidentifier, Option, rules
from tests.images.dicom_factory import PLANTED_DATE, PLANTED_TIME, ct_dataset, write

KEY = b"k" * 32
PLANTED = re.compile(rb"PHI[0-9A-F]{8}Q|1\.2\.826\.0\.1\.3680043\.9\.7777\.\d+")
FIXED = [
    b"NESTED",
    b"DEEPER",
    b"PRIVATE-PHI",
    b"OVERLAYPHI",
    b"ACME PHI",
    b"DOE",
    b"JANE",
    b"MRN-0001",
    b"19500101",
]


def _roundtrip(
    ds: pydicom.Dataset, engine: Deidentifier, tmp_path: Path
) -> tuple[bytes, pydicom.Dataset]:
    out = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    engine.apply(ds)
    write(ds, out)
    return out.read_bytes(), pydicom.dcmread(out)


def test_table_is_loaded_with_every_action() -> None:
    table = rules(frozenset())
    assert len(table) > 500
    assert set(table.values()) <= {"X", "Z", "D", "U", "K", "C"}
    assert table[0x00100010] == "Z"  # Patient's Name
    assert table[0x0020000D] == "U"  # Study Instance UID
    with_options = rules(DEFAULT_OPTIONS)
    assert with_options[0x00100040] == "K"  # Patient's Sex kept with patient characteristics
    assert with_options[0x00080020] == "C"  # Study Date shifted


def test_basic_profile_leaves_no_planted_value(tmp_path: Path) -> None:
    source = ct_dataset(plant_everything=True)
    pixels = source.PixelData
    raw, out = _roundtrip(source, Deidentifier(KEY, options=[]), tmp_path)
    assert PLANTED.findall(raw) == []
    assert [s for s in FIXED if s in raw] == []
    assert PLANTED_DATE.encode() not in raw
    assert PLANTED_TIME.encode() not in raw
    assert out.PixelData == pixels
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SOPInstanceUID.startswith("2.25.")
    assert not any(elem.tag.is_private for elem in out.iterall())


def test_default_options_shift_dates_keep_characteristics_clean_descriptors(tmp_path: Path) -> None:
    engine = Deidentifier(KEY)
    first = ct_dataset("MRN-7")
    second = ct_dataset("MRN-7")
    second.StudyDate = "20240325"
    _, a = _roundtrip(first, engine, tmp_path)
    _, b = _roundtrip(second, engine, tmp_path)
    from datetime import datetime

    def day(v: str) -> datetime:
        return datetime.strptime(v, "%Y%m%d")

    assert a.StudyDate != "20240315"
    assert (day(b.StudyDate) - day(a.StudyDate)).days == 10  # intervals kept
    assert a.PatientSex == "F"
    assert a.StudyDescription == "CT CHEST [REMOVED]"
    assert a.PatientID == b.PatientID
    assert a.PatientID.startswith("ANON-")
    codes = {item.CodeValue for item in a.DeidentificationMethodCodeSequence}
    assert {"113100", "113107", "113108", "113105"} <= codes
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"


def test_uids_are_consistent_within_a_scope_and_differ_across(tmp_path: Path) -> None:
    study = "1.2.826.0.1.3680043.9.1.1"
    x, y = ct_dataset(study_uid=study), ct_dataset(study_uid=study)
    grant_a = Deidentifier(KEY, uid_scope="grant-a")
    grant_b = Deidentifier(KEY, uid_scope="grant-b")
    _, ax = _roundtrip(x, grant_a, tmp_path)
    _, ay = _roundtrip(y, grant_a, tmp_path)
    _, bz = _roundtrip(ct_dataset(study_uid=study), grant_b, tmp_path)
    assert ax.StudyInstanceUID == ay.StudyInstanceUID
    assert ax.StudyInstanceUID != bz.StudyInstanceUID
    assert len(ax.StudyInstanceUID) <= 64


@pytest.mark.parametrize(
    ("burned", "sop_class", "quarantined"),
    [
        ("YES", None, True),
        ("NO", None, False),
        (None, SecondaryCaptureImageStorage, True),
        ("NO", SecondaryCaptureImageStorage, False),
    ],
)
def test_burned_in_annotation_is_quarantined(
    burned: str | None, sop_class: str | None, quarantined: bool
) -> None:
    ds = ct_dataset(burned_in=burned)
    if sop_class:
        ds.SOPClassUID = sop_class
    assert Deidentifier(KEY).apply(ds).quarantined is quarantined


def _errors(path: Path) -> set[str]:
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    # Normalise away values so the same complaint about a changed value still matches.
    return {re.sub(r"<[^>]*>|\d+", "#", line) for line in lines if line.startswith("Error")}


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None and not os.environ.get("LEDGER_REQUIRE_POSTGRES"),
    reason="dciodvfy (dicom3tools) not installed; CI installs it",
)
def test_dciodvfy_reports_no_new_errors(tmp_path: Path) -> None:
    src = write(ct_dataset("MRN-9"), tmp_path / "in.dcm")
    ds = pydicom.dcmread(src)
    Deidentifier(KEY).apply(ds)
    out = write(ds, tmp_path / "out.dcm")
    assert _errors(out) - _errors(src) == set()


def test_cli_deid_folder_with_quarantine_and_junk(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write(ct_dataset("MRN-1", plant_everything=True), src / "a" / "1.dcm")
    write(ct_dataset("MRN-2"), src / "a" / "2.dcm")
    write(ct_dataset("MRN-3", burned_in="YES"), src / "b" / "3.dcm")
    (src / "notes.txt").write_text("not dicom")
    (src / "truncated.dcm").write_bytes((src / "a" / "2.dcm").read_bytes()[:300])
    runner = CliRunner()
    key = tmp_path / "keys" / "deid.key"
    r = runner.invoke(app, ["deid", str(src), str(tmp_path / "out"), "--key", str(key), "--json"])
    assert r.exit_code == 2  # no key yet
    r = runner.invoke(
        app,
        [
            "deid",
            str(src),
            str(tmp_path / "out"),
            "--key",
            str(key),
            "--create-key",
            "--json",
            "--basic",
        ],
    )
    assert r.exit_code == 1, r.output  # the truncated file failed; the batch went on
    summary = json.loads(r.output[r.output.index("{") :])
    assert (summary["files_in"], summary["written"], summary["quarantined"]) == (5, 2, 1)
    outcomes = {f["file"]: f["outcome"] for f in summary["files"]}
    assert (outcomes["notes.txt"], outcomes["truncated.dcm"]) == ("skipped", "failed")
    assert (tmp_path / "out" / "quarantine" / "b" / "3.dcm").exists()
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    for path in (tmp_path / "out").rglob("*.dcm"):
        raw = path.read_bytes()
        assert PLANTED.findall(raw) == []
        assert [s for s in FIXED if s in raw] == []
    r = runner.invoke(
        app, ["deid", str(src), str(tmp_path / "out2"), "--key", str(key), "--option", "dreaming"]
    )
    assert r.exit_code == 2


def test_options_enum_covers_the_table_columns() -> None:
    assert {o.value for o in Option} >= {"rtnLongModifDatesOpt", "cleanDescOpt", "rtnSafePrivOpt"}


# -- table E.1-1, 2026c edition ---------------------------------------------------------


def _vr_2026c(tag: int, name: str) -> str:
    """The VR of an attribute added by 2026c (pydicom's dictionary may predate it)."""
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        pass
    if name.endswith("Sequence"):
        return "SQ"
    if name.endswith("DateTime"):
        return "DT"
    if name.endswith("UID"):
        return "UI"
    if name.endswith(("URI", "Reference")):
        return "UR"
    return "UT"


def _additions() -> list[tuple[int, str, str]]:
    rows = json.loads(
        resources.files("ledger.images")
        .joinpath("data/confidentiality_profile_additions_2026c.json")
        .read_text()
    )
    return [(int(r["id"], 16), r["name"], r["basicProfile"]) for r in rows]


def _plant_2026c(ds: pydicom.Dataset) -> None:
    for tag, name, _ in _additions():
        vr = _vr_2026c(tag, name)
        if vr == "SQ":
            item = pydicom.Dataset()
            item.add_new(0x00700006, "ST", f"PHI{tag:08X}Q")  # Unformatted Text Value
            item.add_new(0x0040B034, "DT", PLANTED_DATE + PLANTED_TIME)  # Annotation DateTime
            ds.add_new(tag, vr, Sequence([item]))
        elif vr == "DT":
            ds.add_new(tag, vr, PLANTED_DATE + PLANTED_TIME)
        elif vr == "UI":
            ds.add_new(tag, vr, f"1.2.826.0.1.3680043.9.7777.{tag}")
        elif vr == "UR":
            ds.add_new(tag, vr, f"https://example.org/PHI{tag:08X}Q")
        else:
            ds.add_new(tag, vr, f"PHI{tag:08X}Q"[: 16 if vr == "SH" else None])


def test_the_table_is_the_2026c_edition() -> None:
    added = _additions()
    assert len(added) == 35
    for options in (frozenset(), DEFAULT_OPTIONS, frozenset(Option)):
        table = rules(options)
        assert all(tag in table for tag, _, _ in added)
    assert rules(frozenset())[0x00100012] == "X"  # Name to Use
    assert rules(frozenset())[0x300A0054] == "U"  # Table Top Position Alignment UID
    assert Deidentifier(KEY).edition == "2026c"


@pytest.mark.parametrize("options", [frozenset(), DEFAULT_OPTIONS, frozenset(Option)])
def test_attributes_added_by_2026c_leave_nothing(
    tmp_path: Path, options: frozenset[Option]
) -> None:
    ds = ct_dataset("MRN-2026")
    _plant_2026c(ds)
    for tag, _, _ in _additions():
        assert tag in ds
    engine = Deidentifier(KEY, options)
    result = engine.apply(ds)
    out = write(ds, tmp_path / "out.dcm")
    raw = out.read_bytes()
    assert PLANTED.findall(raw) == []
    assert PLANTED_DATE.encode() not in raw
    assert result.edition == "2026c"
    method = pydicom.dcmread(out).DeidentificationMethod
    assert method[0] == "ledger PS3.15 2026c Annex E table E.1-1"


# -- pseudonyms without PatientID --------------------------------------------------------


def _patient_files() -> list[tuple[str, pydicom.Dataset]]:
    """26 files of six patients, none with a PatientID."""
    files: list[tuple[str, pydicom.Dataset]] = []

    def add(patient: str, count: int, study: str, **attrs: object) -> None:
        for _ in range(count):
            ds = ct_dataset(study_uid=study, rows=8)
            del ds.PatientID
            del ds.PatientName
            del ds.PatientBirthDate
            for keyword, value in attrs.items():
                setattr(ds, keyword, value)
            files.append((patient, ds))

    one = {"PatientName": "ALPHA^ONE", "PatientBirthDate": "19600101"}
    add("p1", 3, "1.2.826.0.1.3680043.9.1.11", **one)
    add("p1", 2, "1.2.826.0.1.3680043.9.1.12", **one)  # a second study, same person
    add("p2", 4, "1.2.826.0.1.3680043.9.1.21", PatientName="ALPHA^ONE", PatientBirthDate="19700101")
    add("p3", 2, "1.2.826.0.1.3680043.9.1.31", OtherPatientIDs="OTHER-3")
    add("p3", 2, "1.2.826.0.1.3680043.9.1.32", OtherPatientIDs="OTHER-3")
    add("p4", 3, "1.2.826.0.1.3680043.9.1.41", PatientName="BETA^FOUR")  # no birth date
    add("p4b", 2, "1.2.826.0.1.3680043.9.1.42", PatientName="BETA^FOUR")
    add("p5", 4, "1.2.826.0.1.3680043.9.1.51")  # nothing at all
    add("p6", 4, "1.2.826.0.1.3680043.9.1.61", PatientID="", **one | {"PatientName": "GAMMA^SIX"})
    assert len(files) == 26
    return files


def test_files_without_patient_id_never_share_a_pseudonym_across_patients() -> None:
    engine = Deidentifier(KEY)
    seen: dict[str, set[str]] = {}
    shifts: dict[str, set[str]] = {}
    bases: dict[str, set[str]] = {}
    for patient, ds in _patient_files():
        result = engine.apply(ds)
        seen.setdefault(patient, set()).add(ds.PatientID)
        shifts.setdefault(patient, set()).add(ds.StudyDate)
        bases.setdefault(patient, set()).add(result.pseudonym_basis)
        assert f"pseudonym from {result.pseudonym_basis}" in ds.DeidentificationMethod
    assert all(len(p) == 1 for p in seen.values()), seen  # one patient (or study): one
    pseudonyms = [next(iter(p)) for p in seen.values()]
    assert len(set(pseudonyms)) == len(seen) == 7  # p4's two studies are kept apart
    assert len({next(iter(s)) for s in shifts.values()}) == 7  # and so are date shifts
    assert bases == {
        "p1": {"PatientName+PatientBirthDate"},
        "p2": {"PatientName+PatientBirthDate"},
        "p3": {"OtherPatientIDs"},
        "p4": {"StudyInstanceUID"},
        "p4b": {"StudyInstanceUID"},
        "p5": {"StudyInstanceUID"},
        "p6": {"PatientName+PatientBirthDate"},
    }


def test_patient_id_still_joins_one_patient_and_is_keyed_apart() -> None:
    engine = Deidentifier(KEY)
    a, b = ct_dataset("MRN-55"), ct_dataset("MRN-55")
    b.PatientName = "SOMEONE^ELSE"  # PatientID decides, as before
    assert engine.apply(a).pseudonym_basis == "PatientID"
    engine.apply(b)
    assert a.PatientID == b.PatientID == engine.pseudonym("MRN-55")
    c = ct_dataset("", study_uid="1.2.826.0.1.3680043.9.1.99")
    c.PatientName = "MRN-55"
    del c.PatientBirthDate
    assert engine.apply(c).pseudonym_basis == "StudyInstanceUID"
    assert c.PatientID != a.PatientID


def test_a_name_typed_into_a_date_time_or_time_leaves_nothing_of_itself(tmp_path: Path) -> None:
    """Dates are shifted and times kept, but only values that are dates and times: a
    malformed one becomes the dummy, not its date shifted and the rest (a name) kept."""
    ds = ct_dataset("MRN-DT")
    planted = "SMITHQZ"
    ds.AcquisitionDateTime = f"20240315{planted}"  # a date, then a name
    ds.AcquisitionTime = f"10{planted}"
    ds.ContentDate = f"2024{planted}"
    ds.SeriesTime = "101500.25"  # a time: kept
    ds.InstanceCreationDate = "20240315"
    path = write(ds, tmp_path / "in.dcm")
    out = pydicom.dcmread(path)
    Deidentifier(b"k" * 32).apply(out)
    written = tmp_path / "out.dcm"
    out.save_as(written, enforce_file_format=True)
    raw = written.read_bytes()
    for fragment in (planted, planted[2:], "QZ"):
        assert fragment.encode() not in raw
    assert out.SeriesTime == "101500.25"
    assert out.AcquisitionDateTime == "19000101000000"


def test_apply_decodes_no_kept_attribute_but_those_it_names(tmp_path: Path) -> None:
    """``render_reuse`` renders a series' next files element by element and relies on
    ``apply`` reading, for the whole file, only elements it acts on, elements whose VR
    ``header_values`` decodes, and ``FILE_LEVEL`` (and what pydicom reads to settle a
    VR) by name; and on the burned-in rule reading only ``render_reuse.READ_BY_NAME``.
    Anything else ``apply`` decodes must be added to those, or reuse would copy what it
    should read again."""
    from pydicom.dataelem import RawDataElement

    from ledger.access.release_render import _at_risk
    from ledger.access.render_reuse import READ_BY_NAME
    from ledger.images.deid import FILE_LEVEL
    from ledger.images.deid_text import READ_VRS

    ds = ct_dataset("MRN-READ", plant_everything=True, rows=8)
    ds.ImagePositionPatient = [0.0, 0.0, 1.0]
    ds.InstanceNumber = 3
    ds.Rows = 8
    path = write(ds, tmp_path / "in.dcm")
    read = pydicom.dcmread(path, stop_before_pixels=True)
    engine = Deidentifier(b"k" * 32)
    table = engine.rules
    engine.apply(read)
    for tag in list(read.keys()):
        elem = read.get_item(tag)
        if isinstance(elem, RawDataElement):
            continue  # never decoded
        vr = str(elem.VR)
        assert (
            tag in FILE_LEVEL | READ_BY_NAME
            or table.get(int(tag)) not in (None, "K")
            or vr in READ_VRS | {"SQ", "UN"}
            or tag.is_private
        ), f"apply decoded {tag} ({elem.keyword}), which it keeps and does not name"
    fresh = pydicom.dcmread(path, stop_before_pixels=True)
    _at_risk(fresh)
    keys = fresh.keys()  # iterating the dataset itself would decode every element
    decoded = {t for t in keys if not isinstance(fresh.get_item(t), RawDataElement)}
    assert decoded <= READ_BY_NAME
