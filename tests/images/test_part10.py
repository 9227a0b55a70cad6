"""``write_part10`` writes the bytes pydicom's ``dcmwrite(enforce_file_format=True)`` writes,
preamble aside (always zeros), for every published pydicom test file it can write."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest

from ledger.images.part10 import write_part10


def _readable() -> list[Path]:
    """pydicom's own test files (its package folder: nothing downloaded) that read."""
    root = Path(pydicom.__file__).parent / "data"
    found = []
    names = [*(root / "test_files").rglob("*.dcm"), *(root / "charset_files").rglob("*.dcm")]
    for name in sorted(names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(name)
            except Exception:
                continue
        if getattr(ds, "file_meta", None) is not None and "SOPInstanceUID" in ds:
            found.append(Path(name))
    return found


FILES = _readable()
LIES_ABOUT_ENCODING = {"SC_rgb_jpeg.dcm"}


def test_there_are_files_to_compare() -> None:
    assert len(FILES) > 60


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_bytes_are_dcmwrites(path: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_ds, ours_ds = pydicom.dcmread(path), pydicom.dcmread(path)
        theirs_ds.preamble = None
        buffer = io.BytesIO()
        try:
            pydicom.dcmwrite(buffer, theirs_ds, enforce_file_format=True)
        except Exception as exc:
            if path.name in LIES_ABOUT_ENCODING:
                return  # ours writes it: the test below
            with pytest.raises(type(exc)):
                write_part10(ours_ds, tmp_path / "out.dcm")
            return
        write_part10(ours_ds, tmp_path / "out.dcm")
    assert (tmp_path / "out.dcm").read_bytes() == buffer.getvalue()


def test_an_input_preamble_is_not_copied(tmp_path: Path) -> None:
    ds = pydicom.dcmread(FILES[0])
    ds.preamble = b"DOE^JANE".ljust(128, b" ")
    write_part10(ds, tmp_path / "out.dcm")
    assert (tmp_path / "out.dcm").read_bytes()[:132] == b"\x00" * 128 + b"DICM"


def test_a_file_that_lies_about_its_encoding_is_written_in_the_one_it_names(
    tmp_path: Path,
) -> None:
    """pydicom's SC_rgb_jpeg.dcm names Explicit VR (JPEG Baseline) and is encoded implicit:
    pydicom reads it (switching encoding) but its own dcmwrite cannot write it back. We
    write it in the encoding its transfer syntax names, each value unchanged."""
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "SC_rgb_jpeg.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        expected = {e.tag: e.value for e in pydicom.dcmread(path) if e.tag != 0x7FE00010}
    write_part10(ds, tmp_path / "out.dcm")
    back = pydicom.dcmread(tmp_path / "out.dcm")
    assert not back.is_implicit_VR
    assert back.ImageType == ["DERIVED", "SECONDARY", "OTHER"]
    assert {e.tag: e.value for e in back if e.tag != 0x7FE00010} == expected
    assert back.PixelData == ds.PixelData
