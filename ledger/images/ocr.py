"""Tesseract on decoded frames: the OCR half of the burned-in text check
(``ledger/images/pixels.py`` decides what is read and what is done with the words).

Each frame becomes 8-bit grayscale (palette colour through its lookup table; colour as the
brightest of its samples; the range stretched to 0-255), inverted when mostly dark so the
text is dark on light, and scaled up (up to ``MAX_UPSCALE`` times) when its longer side is
under ``OCR_SIDE`` pixels. Tesseract (``$LEDGER_TESSERACT`` or ``tesseract`` on ``PATH``:
Debian's ``tesseract-ocr``, nothing downloaded) reads it from standard input in
sparse-text mode with one thread; word boxes come back in the frame's own pixels.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array

OCR_SIDE = 1000
MAX_UPSCALE = 4
MIN_SIDE = 8
OCR_TIMEOUT = 120.0
TESSERACT_ENV = "LEDGER_TESSERACT"

Array = NDArray[Any]


@dataclass(frozen=True)
class Word:
    """One OCR word, its box in the frame's own pixel coordinates."""

    text: str
    confidence: float
    frame: int
    left: int
    top: int
    width: int
    height: int


class OcrError(Exception):
    """Tesseract did not read the frame."""


def tesseract() -> str | None:
    """The tesseract program to run, or None when there is none."""
    return shutil.which(os.environ.get(TESSERACT_ENV) or "tesseract")


def plain_error(exc: BaseException) -> str:
    """An exception on one line, cut short: for a decision a person reads."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


# -- pixels to OCR -----------------------------------------------------------------------
def decode_frame(ds: Dataset, index: int) -> Array:
    """One frame as pydicom decodes it, palette colour applied: (rows, cols[, samples])."""
    arr: Array = pixel_array(ds, index=index)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    return arr


def to_gray8(frame: Array) -> Array:
    """8-bit grayscale with the text dark on light, as Tesseract reads best (whichever
    way round the frame's values run, ``MONOCHROME1`` included: the mostly-dark way is
    inverted)."""
    data = frame.astype(np.float64, copy=False)
    if data.ndim == 3:
        data = data.max(axis=2)
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(data.min()), float(data.max())
    if high <= low:
        return np.full(data.shape, 255, dtype=np.uint8)
    gray = ((data - low) * (255.0 / (high - low))).astype(np.uint8)
    if np.median(gray) < 128:
        gray = 255 - gray
    return gray


def upscale(gray: Array) -> tuple[Array, int]:
    """Small images scaled up so glyphs are tall enough for Tesseract."""
    side = max(gray.shape)
    factor = min(MAX_UPSCALE, math.ceil(OCR_SIDE / side)) if side < OCR_SIDE else 1
    if factor <= 1:
        return gray, 1
    image = Image.fromarray(gray).resize(
        (gray.shape[1] * factor, gray.shape[0] * factor), Image.Resampling.BICUBIC
    )
    return np.asarray(image), factor


def read_words(program: str, frame: Array, index: int) -> list[Word]:
    """Tesseract's words in one decoded frame, boxes mapped back to the frame's pixels."""
    if min(frame.shape[:2]) < MIN_SIDE:
        return []
    gray, factor = upscale(to_gray8(frame))
    height, width = gray.shape
    image = b"P5\n%d %d\n255\n" % (width, height) + np.ascontiguousarray(gray).tobytes()
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argument list, the program from PATH
            [program, "stdin", "stdout", "--psm", "11", "-l", "eng", "tsv"],
            input=image,
            capture_output=True,
            timeout=OCR_TIMEOUT,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OcrError(plain_error(exc)) from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OcrError(f"tesseract exited {done.returncode}: {' '.join(message[-2:])[:200]}")
    return _parse_tsv(done.stdout.decode("utf-8", "replace"), index, factor)


def _parse_tsv(text: str, index: int, factor: int) -> list[Word]:
    words = []
    for line in text.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        left, top, width, height = (int(c) for c in cols[6:10])
        words.append(
            Word(
                text=cols[11].strip(),
                confidence=float(cols[10]),
                frame=index,
                left=left // factor,
                top=top // factor,
                width=math.ceil(width / factor),
                height=math.ceil(height / factor),
            )
        )
    return words
