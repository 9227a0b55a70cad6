"""Burned-in text: which images are read, what OCR finds, masking, and failing closed."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from ledger.images import pixels
from ledger.images.deid_options import BurnedIn
from tests.images.burned_in import (
    BURNED_DATE,
    BURNED_ID,
    BURNED_NAME,
    draw_text,
    need_tesseract,
    ultrasound,
)

TEXT = [BURNED_NAME, BURNED_ID, BURNED_DATE]
IDENTIFYING = {"DOE", "JANE", "73210458", "03/15/2024"}


def _words(ds: Dataset, frames: list[int] | None = None) -> set[str]:
    """Every word OCR reads in the given frames (default: all of them, not a sample)."""
    program = need_tesseract()
    found: set[str] = set()
    for index in range(pixels.frame_count(ds)) if frames is None else frames:
        frame = pixels.decode_frame(ds, index)
        found |= {w.text.strip(",") for w in pixels.read_words(program, frame, index)}
    return found


def _roundtrip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize(
    ("modality", "sop_class", "burned", "expected"),
    [
        ("US", None, None, "modality US"),
        ("US", None, "NO", "modality US"),  # vendors set NO carelessly: read anyway
        ("XA", None, None, "modality XA"),
        ("OT", None, None, "modality OT"),
        ("DX", None, None, "modality DX without BurnedInAnnotation NO"),
        ("MG", None, "NO", None),
        ("CT", None, None, None),
        ("CT", SecondaryCaptureImageStorage, "NO", "secondary capture"),
        ("CT", "1.2.840.10008.5.1.4.1.1.7.4", None, "secondary capture"),  # multi-frame SC
        ("ES", "1.2.840.10008.5.1.4.1.1.77.1.1", None, "visible-light image"),
        ("CT", "1.2.840.10008.5.1.4.1.1.77.1.4", None, "visible-light image"),
        ("", None, None, "no Modality"),
        ("CT", None, "YES", pixels.BURNED_IN_YES),
    ],
)
def test_images_at_risk(
    modality: str, sop_class: str | None, burned: str | None, expected: str | None
) -> None:
    ds = ultrasound([draw_text(64, 64, [])], modality=modality, burned_in=burned)
    ds.SOPClassUID = sop_class or CTImageStorage
    assert pixels.at_risk(ds) == expected


def test_an_image_without_pixels_is_not_at_risk() -> None:
    ds = ultrasound([draw_text(64, 64, [])])
    del ds.PixelData
    assert pixels.at_risk(ds) is None
    assert pixels.check(ds).quarantine is None


def test_sampled_frames() -> None:
    assert pixels.sample_frames(1) == [0]
    assert pixels.sample_frames(3) == [0, 1, 2]
    assert pixels.sample_frames(51) == [0, 25, 50]


def test_text_in_pixels_is_found_and_quarantined_by_default() -> None:
    need_tesseract()
    ds = ultrasound([draw_text(480, 640, TEXT)])
    before = bytes(ds.PixelData)
    check = pixels.check(ds)
    assert check.quarantine == pixels.TEXT_FOUND
    assert {w.text.strip(",") for w in check.words if pixels.is_text(w)} >= {"JANE", "73210458"}
    assert "its one frame" in check.decision()
    assert "JANE" not in check.decision()  # the text read is never repeated
    assert bytes(ds.PixelData) == before


def test_an_image_without_text_passes_and_says_what_was_read() -> None:
    need_tesseract()
    frames = [draw_text(240, 320, []) for _ in range(9)]
    check = pixels.check(ultrasound(frames, rgb=True))
    assert check.quarantine is None
    assert check.frames == [0, 4, 8]
    assert check.decision() == (
        "modality US: no text found by OCR in frames 1, 5, 9 of 9 (sampled: first, middle, last)"
    )


@pytest.mark.parametrize("rgb", [False, True])
def test_masking_removes_the_text_on_every_frame(rgb: bool) -> None:
    need_tesseract()
    frames = [draw_text(480, 640, TEXT) for _ in range(4)]  # frame 1 (of 0-3) is not read
    ds = ultrasound(frames, rgb=rgb)
    assert _words(ds, [0]) >= {"JANE", "73210458"}
    check = pixels.check(ds, BurnedIn.mask)
    assert check.quarantine is None, check.decision()
    assert check.masked >= 4
    out = _roundtrip(ds)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert int(out.NumberOfFrames) == 4
    assert _words(out) & IDENTIFYING == set()
    masked = out.pixel_array
    gray = masked[..., 0] if rgb else masked
    assert gray.shape == (4, 480, 640)
    # Only the text's corner changed: the fan below it is untouched.
    assert np.array_equal(gray[:, 120:], np.stack(frames)[:, 120:])
    assert not np.array_equal(gray[:, :120], np.stack(frames)[:, :120])


def test_masking_rewrites_compressed_pixels_uncompressed() -> None:
    need_tesseract()
    ds = ultrasound([draw_text(480, 640, TEXT)])
    ds.compress(RLELossless, generate_instance_uid=False)
    uid = ds.SOPInstanceUID
    check = pixels.check(ds, BurnedIn.mask)
    assert check.quarantine is None
    out = _roundtrip(ds)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.SOPInstanceUID == uid
    assert _words(out) & IDENTIFYING == set()


def test_masking_keeps_a_big_endian_file_big_endian() -> None:
    need_tesseract()
    ds = ultrasound([draw_text(480, 640, TEXT)], rgb=True)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    check = pixels.check(ds, BurnedIn.mask)
    assert check.quarantine is None, check.decision()
    out = _roundtrip(ds)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    assert _words(out) & IDENTIFYING == set()


def test_burned_in_yes_is_quarantined_without_reading() -> None:
    check = pixels.check(ultrasound([draw_text(64, 64, [])], burned_in="YES"), BurnedIn.mask)
    assert check.quarantine == pixels.BURNED_IN_YES
    assert check.frames == []


def test_without_tesseract_images_at_risk_are_quarantined(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(pixels.TESSERACT_ENV, str(tmp_path / "no-such-tesseract"))
    assert pixels.tesseract() is None
    for mode in BurnedIn:
        check = pixels.check(ultrasound([draw_text(64, 64, [])]), mode)
        assert check.quarantine == pixels.OCR_UNAVAILABLE
        assert "tesseract-ocr" in check.quarantine
    ct = ultrasound([draw_text(64, 64, [])], modality="CT", burned_in="NO")
    assert pixels.check(ct).quarantine is None  # not at risk: nothing to read


def test_pixels_that_cannot_be_decoded_are_quarantined() -> None:
    need_tesseract()
    ds = ultrasound([draw_text(64, 64, [])])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not a jpeg \xff\xd9"])
    check = pixels.check(ds)
    assert check.quarantine == pixels.UNDECODABLE
    assert check.decision().startswith("modality US: not checked: ")


def test_tiny_images_cannot_show_legible_text() -> None:
    check = pixels.check(ultrasound([draw_text(6, 40, [])]))
    assert check.quarantine is None
    assert "too small" in check.decision()


def test_a_tesseract_that_fails_quarantines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "tesseract"
    broken.write_text("#!/bin/sh\necho 'Error: no language data' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv(pixels.TESSERACT_ENV, str(broken))
    check = pixels.check(ultrasound([draw_text(64, 64, [])]))
    assert check.quarantine == pixels.OCR_FAILED
    assert "no language data" in check.decision()


def _jpeg_lossless(ds: Dataset, tmp_path: Path) -> Dataset:
    """``ds`` transcoded to JPEG Lossless (Process 14, SV1) by GDCM, read back by pydicom."""
    gdcm = pytest.importorskip("gdcm")
    plain, packed = tmp_path / "plain.dcm", tmp_path / "jpeg-lossless.dcm"
    ds.save_as(plain, enforce_file_format=True)
    reader = gdcm.ImageReader()
    reader.SetFileName(str(plain))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(packed))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    out = pydicom.dcmread(packed)
    assert out.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    return out


def test_jpeg_lossless_images_are_decoded_and_read_not_quarantined(tmp_path: Path) -> None:
    """python-gdcm (a dependency) decodes JPEG Lossless and JPEG-LS for pydicom, so such an
    image at risk is read by OCR like any other; what GDCM cannot decode still fails closed
    (``test_pixels_that_cannot_be_decoded_are_quarantined``)."""
    need_tesseract()
    ds = _jpeg_lossless(ultrasound([draw_text(320, 480, TEXT)]), tmp_path)
    check = pixels.check(ds)
    assert check.quarantine == pixels.TEXT_FOUND
    assert check.frames == [0]
    masked = pixels.check(ds, BurnedIn.mask)
    assert masked.quarantine is None
    assert masked.masked > 0
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # rewritten uncompressed
    assert not {w.upper() for w in _words(ds)} & IDENTIFYING
