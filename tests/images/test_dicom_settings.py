"""pydicom never quotes a patient's malformed value in its log or a warning
(``dicom_settings``): both reach the server's log. Planted: a name typed into dates that
ingest does not check (ingest refuses a malformed birth date or name itself), read by ingest
validation, de-identification and release rendering."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import config, dcmread
from pydicom.dataset import Dataset

from ledger.access import release_render
from ledger.images import dicom_settings, validation
from ledger.images.deid import Deidentifier
from ledger.images.store import FilesystemStore
from tests.images.dicom_factory import ct_dataset
from tests.sealed import sealed

PLANTED = "SMITHPLANTED"


def _file_with_malformed_values() -> bytes:
    ds = ct_dataset("MRN-77")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # writing them warns too: not what is tested
        ds.AcquisitionDate = f"{PLANTED}1980"  # not a date
        ds.ContentDate = f"19{PLANTED}"
        ds.AcquisitionDateTime = f"2024{PLANTED}"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _read_everywhere(data: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What was logged or warned while ingest validation, de-identification and release
    read ``data``."""
    store = FilesystemStore(tmp_path)
    item = sealed(store, data)
    caplog.clear()
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = dcmread(io.BytesIO(data))
        for element in ds.iterall():  # every value decoded
            str(element.value)
        validation.validate(ds)
        Deidentifier(b"k" * 32).apply(dcmread(io.BytesIO(data)))
        release_render.render(store, Deidentifier(b"k" * 32), item)
    return [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]


@pytest.fixture
def pydicom_defaults() -> Iterator[None]:
    reading, writing = (
        config.settings.reading_validation_mode,
        config.settings.writing_validation_mode,
    )
    config.settings.reading_validation_mode = config.WARN
    config.settings.writing_validation_mode = config.WARN
    yield
    config.settings.reading_validation_mode, config.settings.writing_validation_mode = (
        reading,
        writing,
    )


def test_a_malformed_value_is_quoted_nowhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _file_with_malformed_values()
    messages = _read_everywhere(data, tmp_path, caplog)
    assert not [m for m in messages if "PLANTED" in m]


def test_pydicoms_default_quotes_a_value_it_is_given(
    caplog: pytest.LogCaptureFixture, pydicom_defaults: None
) -> None:
    """Why the checks are off: with pydicom's default a value is quoted as it is set
    (as de-identification sets values), and the log is the server's."""
    with (
        caplog.at_level(logging.WARNING, logger="pydicom"),
        pytest.warns(UserWarning, match=PLANTED),
    ):
        Dataset().AcquisitionDate = f"19{PLANTED}"
    assert any(PLANTED in r.getMessage() for r in caplog.records)
    dicom_settings.quiet()
    assert config.settings.writing_validation_mode == config.IGNORE
