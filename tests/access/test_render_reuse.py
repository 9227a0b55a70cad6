"""``render_reuse``: the files of a series rendered from the one before give exactly the
bytes ``release_render`` gives each on its own, and quarantine the same files; and the
reuse is taken where a series allows it, not elsewhere."""

from __future__ import annotations

import copy
import io
import random
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from ledger.access import release_render
from ledger.access.archive import Prepared, Quarantined
from ledger.access.release_profile import GENERATIVE_OPTIONS
from ledger.access.render_reuse import SeriesRenderer, parse
from ledger.images import synthetic
from ledger.images.deid import DEFAULT_OPTIONS, Deidentifier
from ledger.images.store import FilesystemStore
from tests.images.dicom_factory import ct_dataset
from tests.sealed import sealed

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _series(n: int = 6, **changes: object) -> list[bytes]:
    """A CT series as a scanner writes one: per instance a new SOP Instance UID,
    instance number, position and time; ``changes`` maps an instance number to
    (keyword, value) set on that instance only."""
    base = ct_dataset("MRN-SERIES", plant_everything=True, rows=16)
    files = []
    for number in range(1, n + 1):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [0.0, 0.0, float(number) * 2.5]
        ds.SliceLocation = float(number) * 2.5
        ds.ContentTime = f"1015{number:02d}"
        ds.add_new(0x00091002, "LO", f"PRIVATE-PHI-{number}")  # differs: removed anyway
        for keyword, value in changes.get(f"at{number}", []):  # type: ignore[attr-defined]
            setattr(ds, keyword, value)
        files.append(_bytes(ds))
    return files


def _stored(tmp_path: Path, files: list[bytes]) -> tuple[FilesystemStore, list[Prepared]]:
    store = FilesystemStore(tmp_path)
    return store, [sealed(store, data, str(n)) for n, data in enumerate(files)]


def _outcome(render: object, item: Prepared) -> object:
    try:
        header, pixels = render(item)  # type: ignore[operator]
        return bytes(header) + bytes(pixels)
    except Quarantined as exc:
        return ("quarantined", tuple(exc.reasons))


def _compare(tmp_path: Path, files: list[bytes], options: frozenset = DEFAULT_OPTIONS) -> int:
    """Renders ``files`` in order both ways; returns how many were reused."""
    store, items = _stored(tmp_path, files)
    key = b"s" * 32
    series = SeriesRenderer(store, Deidentifier(key, options))
    alone = Deidentifier(key, options)
    for item in items:
        got = _outcome(series.render, item)
        want = _outcome(lambda i: release_render.render_pieces(store, alone, i), item)
        assert got == want, f"file {item.uid}"
    return series.reused


@pytest.mark.parametrize("options", [DEFAULT_OPTIONS, GENERATIVE_OPTIONS])
def test_a_series_renders_from_its_first_file_to_the_same_bytes(
    tmp_path: Path, options: frozenset
) -> None:
    files = _series()
    assert _compare(tmp_path, files, options) == len(files) - 1
    out = (
        _outcome(
            lambda i: SeriesRenderer(*_stored(tmp_path / "x", files[:1])).render(i),
            _stored(tmp_path / "y", files[:1])[1][0],
        )
        if False
        else None
    )
    assert out is None


def test_a_differing_date_renders_the_whole_way_and_leads_on(tmp_path: Path) -> None:
    """A file whose context differs (here a date, from the 4th on) renders the whole way
    and becomes the reference for the next."""
    files = _series(6, **{f"at{n}": [("AcquisitionDate", "20240316")] for n in (4, 5, 6)})
    assert _compare(tmp_path, files) == 4  # all but the 1st and the 4th


def test_a_differing_name_or_text_is_never_reused(tmp_path: Path) -> None:
    files = _series(
        6,
        at2=[("StudyDescription", "CT CHEST DOE JANE FOLLOW UP")],
        at5=[("PatientName", "DOE^JANET")],
    )
    assert _compare(tmp_path, files) == 1  # the 4th, from the 3rd


def test_a_burned_in_file_in_a_series_is_still_quarantined(tmp_path: Path) -> None:
    files = _series(4, at3=[("BurnedInAnnotation", "YES")])
    store, items = _stored(tmp_path, files)
    series = SeriesRenderer(store, Deidentifier(b"q" * 32))
    outcomes = [_outcome(series.render, item) for item in items]
    assert outcomes[2] == ("quarantined", ("BurnedInAnnotation is YES",))
    assert all(isinstance(o, bytes) for i, o in enumerate(outcomes) if i != 2)


def test_planted_values_of_the_varying_elements_do_not_leave(tmp_path: Path) -> None:
    files = _series()
    store, items = _stored(tmp_path, files)
    series = SeriesRenderer(store, Deidentifier(b"v" * 32))
    for item in items:
        header, _ = series.render(item)
        for planted in (b"PRIVATE-PHI", b"DOE^JANE", b"MRN-SERIES", b"19500101"):
            assert planted not in header
    assert series.reused == len(items) - 1


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on its own odd test files
def test_pydicoms_files_and_synthetic_studies_in_sequence(tmp_path: Path) -> None:
    """Files of every kind one after another (other encodings, sequences, private
    tags, no preamble): each renders as on its own, reused or not."""
    files = [p.read_bytes() for p in sorted(PYDICOM_FILES.rglob("*.dcm"))]
    rng = random.Random(5)
    for n in range(4):
        files.append(
            synthetic.instance(
                patient_id="R1",
                issuer="urn:test",
                modality="CT",
                body_part="CHEST",
                study_date=date(2024, 2, 1),
                study_uid="1.2.826.0.99.7",
                series_uid="1.2.826.0.99.7.1",
                number=n + 1,
                rng=rng,
                size=16,
            )
        )
    store, items = _stored(tmp_path, files)
    series = SeriesRenderer(store, Deidentifier(b"c" * 32))
    alone = Deidentifier(b"c" * 32)
    compared = 0
    for item in items:
        try:
            want = _outcome(lambda i: release_render.render_pieces(store, alone, i), item)
        except Exception as exc:
            with pytest.raises(type(exc)):
                series.render(item)
            continue
        got = _outcome(series.render, item)
        if want != _outcome(lambda i: release_render.render_pieces(store, alone, i), item):
            continue  # nothing names the patient: a random pseudonym per render
        assert got == want, item.uid
        compared += 1
    assert compared > 60
    assert series.reused >= 3  # the synthetic study's last three


def test_only_explicit_little_endian_files_with_a_preamble_are_parsed() -> None:
    implicit = (PYDICOM_FILES / "MR_small_implicit.dcm").read_bytes()
    assert parse(implicit) is None
    no_preamble = (PYDICOM_FILES / "no_meta.dcm").read_bytes()
    assert parse(no_preamble) is None
    explicit = _series(1)[0]
    header = parse(explicit)
    assert header is not None
    assert explicit[header.pixels : header.pixels + 4] == b"\xe0\x7f\x10\x00"
