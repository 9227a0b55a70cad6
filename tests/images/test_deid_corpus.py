"""``ledger deid`` over every published DICOM test file we can install, as a user runs it.

The corpus is what the dev extra installs, read from the installed packages (no network):

* pydicom's own test files (``pydicom/data/test_files`` and ``charset_files``) and the
  ``pydicom-data`` package's, found with ``get_testdata_file(name, download=False)`` for
  every name pydicom knows how to download (so nothing is fetched; names that only a
  download would bring are left out);
* ``deid-data`` (pydicom's deid project): CT, a DX of a cat, secondary captures and the
  ultrasounds whose pixels show the patient's name, id, dates and institution; its two
  zipped cines are unpacked beside their zips, as a user would;
* dicognito's wheel ships no test files (its tests stay in its repository), so it adds
  nothing; ``_dicognito_files`` would pick them up if it ever did.

Checked: the command ends without a traceback and its JSON accounts for every input file
(written, quarantined, skipped or failed, each with a reason); what it wrote is DICOM
pydicom reads; no value of an attribute the table removes or replaces is left anywhere in
a file it wrote (nested sequences and private tags included); and the ultrasounds with
burned-in text are quarantined by default and, masked on request, show none of their
header's identifying values to OCR.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.data.data_manager import DATA_ROOT
from pydicom.data.download import get_url_map
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from ledger.images import deid_files, pixels
from tests.images.burned_in import need_tesseract

KEY = bytes(range(32))  # fixed: the same pseudonyms, UIDs and date shifts on every run
DEFAULT_OPTIONS = ("rtnLongModifDatesOpt", "rtnPatCharsOpt", "cleanDescOpt")  # ledger deid's
TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM"}
TEXT_VRS |= {"UC", "UI", "UR", "UT"}
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW"}
IDENTIFIER = re.compile(r"(ID|IDs|UID|Number|Numbers)$")
# Values the engine writes itself, recognised by their form: remapped UIDs, the keyed
# pseudonym. A removed value may occur inside one by chance (a 4-digit accession number
# among a UID's 39 digits); that is no copy of it.
MADE = re.compile(rb"^(2\.25\.\d+|ANON-[0-9A-F]{20})$")
# ...and the record of what it did (CID 7050 codes, the method text).
RECORD = {"DeidentificationMethod", "DeidentificationMethodCodeSequence"}
PIXEL_DATA = 0x7FE00010


# -- the corpus ------------------------------------------------------------------------
def _pydicom_files() -> Iterator[tuple[str, Path]]:
    root = Path(DATA_ROOT)
    for folder in ("test_files", "charset_files"):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.suffix not in (".py", ".pyc"):
                yield f"pydicom/{path.relative_to(root / folder)}", path
    for name in sorted(get_url_map()):
        found = get_testdata_file(name, download=False)  # pydicom-data's copy, or None
        if found is not None:
            yield f"pydicom-data/{name}", Path(str(found))


def _deid_data_files() -> Iterator[tuple[str, Path]]:
    root = Path(str(resources.files("deid_data"))) / "data"
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield f"deid-data/{path.relative_to(root)}", path


def _dicognito_files() -> Iterator[tuple[str, Path]]:
    root = Path(str(resources.files("dicognito")))
    for path in sorted(root.rglob("*.dcm")):
        yield f"dicognito/{path.relative_to(root)}", path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus") / "in"
    for rel, path in [*_pydicom_files(), *_deid_data_files(), *_dicognito_files()]:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                archive.extractall(target.parent)
    return folder


def _run(source: Path, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    key = target.parent / f"{target.name}.key"
    key.write_bytes(KEY)
    script = Path(sys.executable).with_name("ledger")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ledger"]
    return subprocess.run(
        [*command, "deid", str(source), str(target), "--key", str(key), "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def run(corpus: Path) -> tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]]:
    need_tesseract()
    out = corpus.parent / "out"
    done = _run(corpus, out)
    return out, json.loads(done.stdout), done


# -- what the table says must go ---------------------------------------------------------
def _actions() -> dict[int, str]:
    """Tag → action under ``ledger deid``'s default options, from the shipped table data
    (read here, not through the engine): an option's K or C overrides the basic profile."""
    out: dict[int, str] = {}
    data = resources.files("ledger.images").joinpath("data")
    for entry in sorted(data.iterdir(), key=lambda e: e.name):
        if not re.match(r"confidentiality_profile_.*\.json$", entry.name):
            continue
        for row in json.loads(entry.read_text()):
            tag_id = row["id"].lower()
            if len(tag_id) != 8 or "x" in tag_id:
                continue
            chosen = [row[o] for o in DEFAULT_OPTIONS if row.get(o)]
            out[int(tag_id, 16)] = (
                "C" if "C" in chosen else "K" if "K" in chosen else row["basicProfile"]
            )
    return out


ACTIONS = _actions()


def _vr(elem: Any) -> str:
    vr = elem.VR
    if vr is None or (isinstance(elem, RawDataElement) and vr == "UN" and not elem.tag.is_private):
        try:
            vr = dictionary_VR(elem.tag).split(" or ")[0]
        except KeyError:
            vr = "UN"
    return str(vr)


def _keyword(tag: int) -> str:
    return pydicom.datadict.keyword_for_tag(tag) or ""


def _must_go(tag: Any, vr: str) -> bool:
    """The table removes or replaces it (X, Z, D, U and their compounds), or cleans it
    and it is a name or an identifier (C on PN or ...ID/Number); every private element
    goes too (no safe private creators are kept by default). Cleaned descriptors and
    shifted dates are the engine's business elsewhere: they may keep clinical words and a
    shifted date may equal another date."""
    if tag.is_private:
        return True
    action = ACTIONS.get(int(tag))
    if action is None or action == "K":
        return False
    if action == "C":
        return vr == "PN" or bool(IDENTIFIER.search(_keyword(int(tag))))
    return True


def _raw_items(ds: Dataset) -> Iterator[tuple[Any, str, bytes]]:
    """(tag, VR, value bytes as stored in the file) of every element, into sequences."""
    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        vr = _vr(elem)
        nested = vr == "SQ" or (
            isinstance(elem, RawDataElement) and elem.length == 0xFFFFFFFF and tag != PIXEL_DATA
        )
        if nested or not isinstance(elem, RawDataElement):
            try:
                value = ds[tag].value
            except Exception:  # a value pydicom cannot convert: take it as stored
                value = elem.value
            if isinstance(value, pydicom.sequence.Sequence):
                for item in value:
                    yield from _raw_items(item)
                continue
            if not isinstance(elem, RawDataElement):
                yield tag, vr, value if isinstance(value, bytes) else str(value).encode()
                continue
        yield tag, vr, bytes(elem.value or b"")


def _identifying_values(path: Path) -> set[bytes]:
    """Each value (of each multi-value) at least 4 bytes long, as stored in the original,
    of every element that must go; private UN values only when they read as text."""
    ds = pydicom.dcmread(path, force=True)
    found: set[bytes] = set()
    for tag, vr, raw in _raw_items(ds):
        if not _must_go(tag, vr):
            continue
        if vr == "UN":
            if not re.fullmatch(rb"[\x20-\x7e]+\s*\x00?", raw) or not re.search(
                rb"[0-9A-Za-z]", raw
            ):
                continue
        elif vr not in TEXT_VRS:
            continue
        for value in raw.split(b"\\"):
            value = value.strip(b" \x00")
            if len(value) >= 4:
                found.add(value)
    return found


def _allowed_places(path: Path) -> list[tuple[bytes, bool]]:
    """Values in a written file that may hold a removed value's bytes, each with whether
    names and identifiers are excused there too:

    * kept attributes (K, or not in the table) and the file meta: a removed value found
      inside one is that attribute's own value (InstitutionName "TOSHIBA" inside
      Manufacturer "TOSHIBA_MEC", a private "0.000000" inside a kept distance) - for
      names and identifiers too;
    * cleaned attributes (C): descriptors may keep clinical words that a private tag or a
      removed attribute repeated ("US KIDNEY") - but not names and identifiers, which the
      cleaning must take out;
    * values the engine makes (remapped UIDs, the pseudonym, the CID 7050 record) and
      binary values (pixel data, LUTs): bytes found there are no copy of a value."""
    ds = pydicom.dcmread(path)
    places = [(str(elem.value).encode(), True) for elem in ds.file_meta]
    for tag, vr, raw in _raw_items(ds):
        action = ACTIONS.get(int(tag))
        made = MADE.match(raw.strip(b" \x00")) or _keyword(int(tag)) in RECORD
        kept = action in (None, "K") and not tag.is_private
        if vr in BINARY_VRS or made or kept:
            places.append((raw, True))
        elif action == "C":
            places.append((raw, False))
    return places


def _leaks(original: Path, written: Path) -> list[bytes]:
    """Removed values whose bytes occur in the written file more often than inside the
    places where they may legitimately occur."""
    raw = written.read_bytes()
    places = _allowed_places(written)
    ds = pydicom.dcmread(original, force=True)
    names_or_ids = {
        value
        for tag, vr, value_raw in _raw_items(ds)
        if vr == "PN" or (not tag.is_private and IDENTIFIER.search(_keyword(int(tag))))
        for value in value_raw.split(b"\\")
    }
    leaks = []
    for value in _identifying_values(original):
        strict = value.strip(b" \x00") in {v.strip(b" \x00") for v in names_or_ids}
        excused = sum(place.count(value) for place, any_value in places if any_value or not strict)
        if raw.count(value) > excused:
            leaks.append(value)
    return sorted(leaks)


# -- the tests ---------------------------------------------------------------------------
def test_every_file_is_accounted_for_without_a_crash(
    corpus: Path, run: tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]]
) -> None:
    out, summary, done = run
    assert "Traceback" not in done.stderr
    inputs = sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*") if p.is_file())
    files = {f["file"]: f for f in summary["files"]}
    assert sorted(files) == inputs
    assert summary["files_in"] == len(inputs) > 250
    for report in summary["files"]:
        assert report["outcome"] in ("written", "quarantined", "skipped", "failed")
        if report["outcome"] != "written":
            assert report["reasons"], report
        if report["outcome"] in ("written", "quarantined"):
            pydicom.dcmread(out / report["output"])  # a Part 10 file: no force needed
    counts = [summary[k] for k in ("written", "quarantined", "skipped", "failed")]
    assert sum(counts) == len(inputs)
    assert done.returncode == (1 if summary["failed"] else 0)
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == {f["output"] for f in summary["files"] if "output" in f}
    # The files the issue named: a plain reason each, never a traceback or pydicom's hint.
    assert files["pydicom/nested_priv_SQ.dcm"]["outcome"] == "failed"
    assert files["pydicom/meta_missing_tsyntax.dcm"]["outcome"] == "failed"
    assert files["pydicom/dicomdirtests/DICOMDIR"]["reasons"] == [deid_files.DICOMDIR]
    assert files["pydicom/ExplVR_LitEndNoMeta.dcm"]["note"] == deid_files.NO_PART10
    assert "force=True" not in json.dumps(summary)
    assert "Traceback" not in json.dumps(summary)
    # Every file pydicom reads as an instance is written: none fails in our writer (one
    # that lies about its encoding, as SC_rgb_jpeg.dcm, included).
    assert deid_files.UNWRITABLE not in summary["failed_by_reason"]
    assert files["pydicom/SC_rgb_jpeg.dcm"]["outcome"] == "quarantined"
    print(json.dumps({k: v for k, v in summary.items() if k != "files"}, indent=1))


def test_no_removed_value_is_left_in_any_written_file(
    corpus: Path, run: tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]]
) -> None:
    out, summary, _ = run
    written = [f for f in summary["files"] if f["outcome"] in ("written", "quarantined")]
    assert len(written) > 200
    checked, leaks = 0, {}
    for report in written:
        values = _identifying_values(corpus / report["file"])
        checked += len(values)
        found = _leaks(corpus / report["file"], out / report["output"])
        if found:
            leaks[report["file"]] = found
    assert leaks == {}
    assert checked > 2000  # the check has plenty to find...


def test_the_leak_check_finds_what_it_looks_for(corpus: Path) -> None:
    """...and it would: on an original file it finds the values the table removes."""
    rgb = corpus / "deid-data/ultrasounds/RGB_IMAGE.dcm"
    found = _leaks(rgb, rgb)
    assert {b"ZZZDOWNTIME^MARY^^", b"40404040404", b"120907058", b"CCHS CLEVELAND CLINIC"} <= set(
        found
    )
    nested = corpus / "pydicom/nested_priv_SQ.dcm"  # values two private sequences down
    assert {b"Nested SQ", b"Double Nested SQ"} <= _identifying_values(nested)


# -- burned-in text ----------------------------------------------------------------------
BURNED = ("deid-data/ultrasounds/RGB_IMAGE.dcm", "deid-data/ultrasounds/RGB_CINE.dcm")


def _spellings(ds: Dataset) -> set[str]:
    """The header's identifying values as they may be drawn: names and ids by part,
    dates in the ways ultrasound machines write them; upper case, letters and digits only."""
    out: set[str] = set()
    for keyword in ("PatientName", "PatientID", "AccessionNumber", "OtherPatientIDs"):
        for part in re.split(r"[\^\s,=]+", str(ds.get(keyword, "") or "")):
            out.add(part)
    for keyword in ("InstitutionName", "ReferringPhysicianName", "OperatorsName"):
        for part in re.split(r"[\^\s,=]+", str(ds.get(keyword, "") or "")):
            out.add(part)
    months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV"]
    months.append("DEC")
    for keyword in ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate"):
        text = str(ds.get(keyword, "") or "")
        if re.fullmatch(r"\d{8}", text):
            y, m, d = text[:4], text[4:6], text[6:8]
            mon = months[int(m) - 1]
            out |= {text, m + d + y, d + m + y, str(int(m)) + str(int(d)) + y}
            out |= {str(int(d)) + mon + y, d + mon + y, y + m + d}
    return {re.sub(r"[^0-9A-Z]", "", s.upper()) for s in out} - {""}


def _ocr_text(path: Path, spread: bool) -> str:
    """OCR of the frames the check samples, or (``spread``) of every tenth frame and the
    last too: frames the check did not read, to show the mask covers them as well."""
    program = need_tesseract()
    ds = pydicom.dcmread(path)
    count = pixels.frame_count(ds)
    frames = sorted({*range(0, count, 10), count - 1}) if spread else pixels.sample_frames(count)
    words = [
        w.text for i in frames for w in pixels.read_words(program, pixels.decode_frame(ds, i), i)
    ]
    return re.sub(r"[^0-9A-Z]", "", "".join(words).upper())


def test_burned_in_ultrasound_is_quarantined_by_default(
    run: tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]],
) -> None:
    _, summary, _ = run
    files = {f["file"]: f for f in summary["files"]}
    for name in BURNED:
        assert files[name]["outcome"] == "quarantined"
        assert files[name]["reasons"] == [pixels.TEXT_FOUND]
    assert "frames 1, 26, 51 of 51 (sampled" in files[BURNED[1]]["pixels"]


def test_masked_ultrasound_shows_no_identifying_value_to_ocr(corpus: Path) -> None:
    need_tesseract()
    source = corpus.parent / "burned"
    for name in BURNED:
        (source / Path(name).name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(corpus / name, source / Path(name).name)
    out = corpus.parent / "masked"
    done = _run(source, out, "--burned-in", "mask")
    summary = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert summary["masked"] == 2
    for name in BURNED:
        original = source / Path(name).name
        spellings = _spellings(pydicom.dcmread(original, stop_before_pixels=True))
        spellings = {s for s in spellings if len(s) >= 4}
        before = {s for s in spellings if s in _ocr_text(original, spread=False)}
        assert len(before) >= 3, (name, before)  # the original shows them: the check can fail
        after = _ocr_text(out / Path(name).name, spread=True)
        assert {s for s in spellings if s in after} == set(), name
