"""Ultrasound-like test images with text drawn into their pixels, and the rule for tests
that need Tesseract: they skip where it is missing, and fail when LEDGER_REQUIRE_OCR=1
(as CI sets, having installed Debian's tesseract-ocr)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from ledger.images import pixels

BURNED_NAME = "DOE, JANE"
BURNED_ID = "MRN 73210458"
BURNED_DATE = "03/15/2024"


def need_tesseract() -> str:
    program = pixels.tesseract()
    if program is None:
        if os.environ.get("LEDGER_REQUIRE_OCR") == "1":
            pytest.fail("no tesseract program (Debian's tesseract-ocr), and LEDGER_REQUIRE_OCR=1")
        pytest.skip("no tesseract program (Debian's tesseract-ocr); CI installs it")
    return program


def draw_text(
    rows: int, cols: int, lines: list[str], *, at: tuple[int, int] = (12, 8)
) -> np.ndarray:
    """An 8-bit grayscale frame: a smooth bright fan (an ultrasound sector) on black, and
    white text."""
    y, x = np.mgrid[0:rows, 0:cols]
    radius = np.hypot(y - rows * 0.1, x - cols / 2)
    fan = (radius < rows * 0.85) & (np.abs(x - cols / 2) < (y - rows * 0.1) * 0.8)
    shade = 60 + 40 * np.sin(radius / 9.0) * np.cos(x / 23.0)
    frame = np.where(fan, shade, 0).astype(np.uint8)
    if lines:
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=22)
        x, y = at
        for line in lines:
            draw.text((x, y), line, fill=255, font=font)
            y += 30
        frame = np.asarray(image).copy()
    return frame


def ultrasound(
    frames: list[np.ndarray],
    *,
    rgb: bool = False,
    patient_id: str = "MRN-US-1",
    burned_in: str | None = None,
    modality: str = "US",
) -> Dataset:
    """An ultrasound instance (one frame or a multi-frame cine) of the given frames."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = "DOE^JANE"
    ds.PatientBirthDate = "19500101"
    ds.StudyDate = "20240315"
    ds.AccessionNumber = "73210458"
    ds.Modality = modality
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    data = np.stack(frames)
    if rgb:
        data = np.repeat(data[..., np.newaxis], 3, axis=-1)
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = frames[0].shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PixelData = (data if len(frames) > 1 else data[0]).tobytes()
    return ds
