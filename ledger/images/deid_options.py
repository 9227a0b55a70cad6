"""The Annex E options by name: a plain enum, no pydicom, so the CLI can list them in its
help without loading the de-identifier."""

from __future__ import annotations

from enum import StrEnum


class Option(StrEnum):
    """Annex E options (the value is the table's column)."""

    retain_long_modified_dates = "rtnLongModifDatesOpt"
    retain_patient_characteristics = "rtnPatCharsOpt"
    retain_device_identity = "rtnDevIdOpt"
    retain_institution_identity = "rtnInstIdOpt"
    clean_descriptors = "cleanDescOpt"
    clean_structured_content = "cleanStructContOpt"
    clean_graphics = "cleanGraphOpt"
    retain_safe_private = "rtnSafePrivOpt"


class BurnedIn(StrEnum):
    """What to do with an image whose pixels OCR finds text in (``ledger/images/pixels.py``)."""

    quarantine = "quarantine"
    mask = "mask"
