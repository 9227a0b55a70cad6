"""Burned-in text in pixels: which images are at risk, OCR of their frames, and masking.

The header says nothing reliable about text drawn into the pixels: ultrasound machines
write the patient's name, id, birth date and the institution across the top of every
frame without setting ``BurnedInAnnotation``. So images at risk are read by OCR
(Tesseract, Debian's ``tesseract-ocr``, run as a program: nothing is downloaded), and
what it finds is masked or the file quarantined, by option; never passed silently.

**At risk** (``at_risk``): any image (``PixelData``, ``FloatPixelData`` or
``DoubleFloatPixelData``) whose ``BurnedInAnnotation`` is ``YES``; every secondary
capture (SOP Class ``1.2.840.10008.5.1.4.1.1.7`` and its multi-frame classes ``.7.x``) and
visible-light image (``1.2.840.10008.5.1.4.1.1.77.1.x``); modalities US, XA, RF, ES, SC,
OT and XC whatever ``BurnedInAnnotation`` says (vendors set it carelessly); DX, CR and MG
unless ``BurnedInAnnotation`` is ``NO``; and an image with no Modality at all.

**Frames**: a single frame, or every frame of up to three, is read whole; a longer cine
is sampled at its first, middle and last frame (``sample_frames``), and the decision
names the frames read. Text that shows only in frames between those is not seen; cines
draw their annotation on every frame, which is what the sampling relies on.

**What counts as text found** (``is_text``): an OCR word with at least
``MIN_CHARS`` (3) letters or digits read with confidence at least ``MIN_CONFIDENCE``
(60 of 100). Shorter or less certain words are what OCR makes of speckle and anatomy;
they do not trigger a decision, but once a frame holds text every word of at least one
letter or digit read with confidence ``MASK_CONFIDENCE`` (30) or more is masked with it.

**OCR input** (``ledger/images/ocr.py``): each frame becomes 8-bit grayscale (palette
colour through its lookup table; colour as the brightest of its samples, so coloured
text on black stays bright; the range stretched to 0-255), inverted when mostly dark so
the text is dark on light as Tesseract prefers (which also turns ``MONOCHROME1`` the
right way round), and scaled up (up to 4 times) when its longer side is under
``OCR_SIDE`` pixels. Tesseract reads it in sparse-text mode (``--psm 11``) with one
thread. Frames smaller than ``MIN_SIDE`` pixels cannot show legible text.

**Masking** (``BurnedIn.mask``): the word boxes found in any sampled frame (padded) are
filled on every frame with that frame's minimum pixel value, as Presidio's DICOM image
redactor does, and the pixel data is rewritten uncompressed (Explicit VR Little Endian;
colour decoded from YBR is written as RGB). The sampled frames are then read again: if
OCR still finds text the file is quarantined after all.

**Failing closed**: no ``tesseract`` program (``$LEDGER_TESSERACT`` or on ``PATH``), pixel
data that cannot be decoded, an OCR error or a mask that cannot be written each
quarantine the file with that reason. The text read is never put in a decision or a
log: it is what the check exists to keep in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import ExplicitVRLittleEndian

from ledger.images.deid_options import BurnedIn
from ledger.images.ocr import MIN_SIDE as MIN_SIDE
from ledger.images.ocr import TESSERACT_ENV as TESSERACT_ENV
from ledger.images.ocr import Array as Array
from ledger.images.ocr import OcrError as OcrError
from ledger.images.ocr import Word as Word
from ledger.images.ocr import decode_frame as decode_frame
from ledger.images.ocr import plain_error
from ledger.images.ocr import read_words as read_words
from ledger.images.ocr import tesseract as tesseract
from ledger.images.sop_classes import BURNED_IN_YES as BURNED_IN_YES
from ledger.images.sop_classes import is_secondary_capture
from ledger.images.validation import frame_count

AT_RISK_MODALITIES = frozenset({"US", "XA", "RF", "ES", "SC", "OT", "XC"})
AT_RISK_UNLESS_NO = frozenset({"DX", "CR", "MG"})
VISIBLE_LIGHT = "1.2.840.10008.5.1.4.1.1.77.1"
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

MIN_CHARS = 3
MIN_CONFIDENCE = 60.0
MASK_CONFIDENCE = 30.0
MASK_PAD = 3
MASK_ROUNDS = 3

# Quarantine reasons, worded once so a batch can count files by reason.
TEXT_FOUND = "burned-in text found by OCR"
TEXT_REMAINS = "burned-in text still found by OCR after masking"
OCR_UNAVAILABLE = (
    "OCR unavailable: no tesseract program (install Debian's tesseract-ocr); "
    "images at risk of burned-in text are not passed unchecked"
)
OCR_FAILED = "OCR failed on the pixel data"
UNDECODABLE = "pixel data cannot be decoded for the burned-in text check"
UNMASKABLE = "burned-in text found and the pixel data cannot be rewritten masked"


@dataclass
class PixelCheck:
    """What the burned-in text check decided for one image."""

    at_risk: str | None = None
    frames: list[int] = field(default_factory=list)
    frame_count: int = 0
    words: list[Word] = field(default_factory=list)
    masked: int = 0
    quarantine: str | None = None
    detail: str = ""
    seconds: float = 0.0

    def decision(self) -> str:
        """One line for a person: why the image was checked and what was decided."""
        if self.at_risk is None:
            return "not at risk of burned-in text"
        return f"{self.at_risk}: {self.detail}"


def at_risk(ds: Dataset) -> str | None:
    """Why ``ds`` may show burned-in text, or None when it need not be read."""
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        return None
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "").strip()
    if burned == "YES":
        return BURNED_IN_YES
    if is_secondary_capture(sop_class):
        return "secondary capture"
    if sop_class.startswith(VISIBLE_LIGHT + "."):
        return "visible-light image"
    if modality in AT_RISK_MODALITIES:
        return f"modality {modality}"
    if modality in AT_RISK_UNLESS_NO and burned != "NO":
        return f"modality {modality} without BurnedInAnnotation NO"
    if not modality:
        return "no Modality"
    return None


def sample_frames(count: int) -> list[int]:
    """The frames read (0-based): all of up to three, else the first, middle and last."""
    if count <= 3:
        return list(range(max(count, 1)))
    return [0, count // 2, count - 1]


def is_text(word: Word) -> bool:
    alnum = sum(1 for c in word.text if c.isalnum())
    return alnum >= MIN_CHARS and word.confidence >= MIN_CONFIDENCE


def check(ds: Dataset, mode: BurnedIn = BurnedIn.quarantine) -> PixelCheck:
    """Read an image at risk by OCR; mask what it finds (``mode`` mask, rewriting
    ``ds``'s pixel data) or decide to quarantine. ``ds`` is untouched unless masked."""
    started = time.perf_counter()
    result = PixelCheck(at_risk=at_risk(ds), frame_count=frame_count(ds))
    try:
        _check(ds, mode, result)
    finally:
        result.seconds = time.perf_counter() - started
    return result


def _check(ds: Dataset, mode: BurnedIn, result: PixelCheck) -> None:
    if result.at_risk is None:
        result.detail = "not checked"
        return
    if result.at_risk == BURNED_IN_YES:
        result.quarantine = BURNED_IN_YES
        result.detail = "quarantined without OCR: the header says the pixels show text"
        return
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if 0 < min(rows, cols) < MIN_SIDE:
        result.detail = f"{rows}x{cols} pixels: too small to show legible text"
        return
    program = tesseract()
    if program is None:
        result.quarantine = OCR_UNAVAILABLE
        result.detail = "not checked: no tesseract program"
        return
    result.frames = sample_frames(result.frame_count)
    where = _frames_text(result.frames, result.frame_count)
    try:
        frames = [(index, decode_frame(ds, index)) for index in result.frames]
    except Exception as exc:  # pydicom raises many types for pixel data it cannot decode
        result.quarantine = UNDECODABLE
        result.detail = f"not checked: {plain_error(exc)}"
        result.frames = []  # none was read
        return
    try:
        result.words = [w for index, frame in frames for w in read_words(program, frame, index)]
    except OcrError as exc:
        result.quarantine = OCR_FAILED
        result.detail = f"{where}: {exc}"
        return
    found = [w for w in result.words if is_text(w)]
    if not found:
        result.detail = f"no text found by OCR in {where}"
        return
    if mode is BurnedIn.quarantine:
        result.quarantine = TEXT_FOUND
        result.detail = f"{len(found)} word(s) of text in {where}"
        return
    words = result.words
    for _ in range(MASK_ROUNDS):
        boxes = [w for w in words if w.confidence >= MASK_CONFIDENCE and _has_alnum(w)]
        try:
            mask(ds, boxes)
            words = [w for i in result.frames for w in read_words(program, decode_frame(ds, i), i)]
        except OcrError as exc:
            result.quarantine = OCR_FAILED
            result.detail = f"masked {result.masked} word box(es), then: {exc}"
            return
        except Exception as exc:  # an array pydicom cannot write back (e.g. 1-bit samples)
            result.quarantine = UNMASKABLE
            result.detail = f"{len(found)} word(s) of text in {where}; {plain_error(exc)}"
            return
        result.masked += len(boxes)
        if not any(is_text(w) for w in words):
            result.detail = (
                f"masked {result.masked} word box(es) found in {where} on every frame; "
                "OCR finds no text after masking"
            )
            return
    remaining = sum(1 for w in words if is_text(w))
    result.quarantine = TEXT_REMAINS
    result.detail = (
        f"masked {result.masked} word box(es) in {MASK_ROUNDS} rounds; "
        f"{remaining} word(s) of text remain in {where}"
    )


def _has_alnum(word: Word) -> bool:
    return any(c.isalnum() for c in word.text)


def _frames_text(frames: Sequence[int], count: int) -> str:
    numbers = ", ".join(str(i + 1) for i in frames)
    if count == 1:
        return "its one frame"
    if len(frames) == count:
        return f"all {count} frames"
    return f"frames {numbers} of {count} (sampled: first, middle, last)"


# -- masking -----------------------------------------------------------------------------
def mask(ds: Dataset, words: Sequence[Word]) -> None:
    """Fill every word box on every frame with the frame's minimum value and write the
    pixel data back uncompressed."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    pixels = np.array(pixel_array(ds), copy=True)
    frames = pixels if frame_count(ds) > 1 else pixels[np.newaxis]
    rows, cols = frames.shape[1], frames.shape[2]
    for frame in frames:
        fill = frame.min(axis=(0, 1)) if samples > 1 else frame.min()
        for w in words:
            pad = max(MASK_PAD, w.height // 5)
            top, left = max(w.top - pad, 0), max(w.left - pad, 0)
            bottom, right = min(w.top + w.height + pad, rows), min(w.left + w.width + pad, cols)
            frame[top:bottom, left:right] = fill
    _write_pixels(ds, frames, "RGB" if samples == 3 else None)


def _write_pixels(ds: Dataset, pixels: Array, photometric: str | None) -> None:
    """Native pixel data in the dataset's own byte order (little endian, explicit VR,
    when it was compressed); ``photometric`` when decoding changed it (YBR to RGB)."""
    allocated = int(ds.BitsAllocated)
    if pixels.dtype.itemsize * 8 != allocated or pixels.dtype.kind not in "ui":
        raise ValueError(f"cannot rewrite {allocated}-bit pixel data decoded as {pixels.dtype}")
    meta = ds.file_meta
    syntax = meta.TransferSyntaxUID
    if syntax.is_compressed:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        little = True
    else:
        little = bool(syntax.is_little_endian)
    data = pixels.astype(pixels.dtype.newbyteorder("<" if little else ">"), copy=False).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)
    element = ds["PixelData"]
    element.VR = "OB" if allocated == 8 else "OW"
    element.is_undefined_length = False
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]
    if photometric is not None:
        ds.PhotometricInterpretation = photometric
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        ds.PlanarConfiguration = 0  # pydicom decodes colour samples interleaved
