"""Release renders every file through the burned-in text check: text OCR finds in an
image at risk is refused (quarantined), never masked, and without OCR such images are
refused too. ``render`` is what a single instance and an archive both go through."""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import pydicom
import pytest

from ledger.access import release_render
from ledger.access.archive import Prepared, Quarantined, render, zip_stream
from ledger.images import pixels
from ledger.images.deid import Deidentifier
from ledger.images.store import FilesystemStore
from tests.images.burned_in import (
    BURNED_DATE,
    BURNED_ID,
    BURNED_NAME,
    draw_text,
    need_tesseract,
    ultrasound,
)
from tests.sealed import sealed


def _stored(store: FilesystemStore, ds: pydicom.Dataset) -> Prepared:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return sealed(store, buffer.getvalue(), str(ds.SOPInstanceUID))


def test_text_in_pixels_is_refused_and_a_clean_image_released(tmp_path: Path) -> None:
    need_tesseract()
    store = FilesystemStore(tmp_path / "objects")
    engine = Deidentifier(b"g" * 32, uid_scope="grant-1")
    burned = _stored(
        store, ultrasound([draw_text(480, 640, [BURNED_NAME, BURNED_ID, BURNED_DATE])])
    )
    clean = _stored(store, ultrasound([draw_text(480, 640, [])], patient_id="MRN-US-2"))
    with pytest.raises(Quarantined) as refused:
        render(store, engine, burned)
    assert refused.value.reasons == [pixels.TEXT_FOUND]
    released = pydicom.dcmread(io.BytesIO(render(store, engine, clean)))
    assert released.PatientIdentityRemoved == "YES"
    archive = b"".join(
        zip_stream(partial(release_render.render, store, engine), [burned, clean], [])
    )
    assert b"deid-quarantine" in archive
    assert pixels.TEXT_FOUND.encode() in archive


def test_without_ocr_images_at_risk_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pixels.TESSERACT_ENV, str(tmp_path / "no-tesseract"))
    store = FilesystemStore(tmp_path / "objects")
    engine = Deidentifier(b"g" * 32)
    item = _stored(store, ultrasound([draw_text(64, 64, [])]))
    with pytest.raises(Quarantined) as refused:
        render(store, engine, item)
    assert refused.value.reasons == [pixels.OCR_UNAVAILABLE]
