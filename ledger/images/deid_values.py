"""Values the de-identifier writes: dummies, shifted dates, and the coded record of what was
done (``DeidentificationMethodCodeSequence``), encoded once per engine.

Pure helpers of ``ledger/images/deid.py``: a value in, a value out.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence

DUMMY_DATE = "19000101"
REDACTED = "REMOVED"
DATE_RE = re.compile(r"^\d{8}$")
# What may follow a DT's date (hours to fraction, then an offset from UTC), and a TM (with
# the colons of old ACR-NEMA times): digits and punctuation, never words.
DT_TIME_RE = re.compile(r"^(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?([+-]\d{4})?$")
TM_RE = re.compile(r"^\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?$")
METHOD_CODES = 0x00120064  # Deidentification Method Code Sequence

DUMMIES = {
    "DA": DUMMY_DATE,
    "DT": DUMMY_DATE + "000000",
    "TM": "000000",
    "PN": "ANONYMOUS",
    "UI": "2.25.0",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "CS": "ANON",
    "AE": "ANON",
}


def dummy(vr: str) -> Any:
    if vr in DUMMIES:
        return DUMMIES[vr]
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
        return 0
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b"\x00\x00"
    return REDACTED


def is_multi(value: Any) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def map_values(value: Any, fn: Callable[[str], str]) -> Any:
    if value is None or value == "":
        return value
    if is_multi(value):
        return [fn(str(v)) for v in value]
    return fn(str(value))


def values(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if is_multi(value):
        return [str(v) for v in value if v not in (None, "")]
    return [str(value)]


def shift_date(value: str, shift: timedelta) -> str:
    if not DATE_RE.match(value):
        return DUMMY_DATE if value else value
    try:
        day = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return DUMMY_DATE
    return (day - shift).strftime("%Y%m%d")


def shift_datetime(value: str, shift: timedelta) -> str:
    """The date shifted and the time kept; a value that is not a date and time (a name
    typed into it, say) becomes the dummy, as a malformed date does: nothing of it is
    kept."""
    value = value.strip()
    if not value or not DT_TIME_RE.match(value[8:]):
        return DUMMIES["DT"] if value else value
    return shift_date(value[:8], shift) + value[8:]


def keep_time(value: str) -> str:
    """A time of day says nothing without its date, so it is kept: if it is one."""
    value = value.strip()
    return value if not value or TM_RE.match(value) else DUMMIES["TM"]


def shift(elem: DataElement, by: timedelta) -> Any:
    if elem.VR == "DA":
        return map_values(elem.value, lambda v: shift_date(v, by))
    if elem.VR == "DT":
        return map_values(elem.value, lambda v: shift_datetime(v, by))
    return map_values(elem.value, keep_time)  # TM


def text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


class MethodCodes:
    """The CID 7050 codes of one engine as a ``DeidentificationMethodCodeSequence`` element.

    The same few items go into every file, so they are encoded once per transfer syntax
    encoding and set as an undecoded element: pydicom writes it byte for byte and decodes it
    only if someone reads it. A dataset with no encoding of its own (built in memory) gets
    the sequence as objects."""

    def __init__(self, codes: list[tuple[str, str]]) -> None:
        self.codes = codes
        self._encoded: dict[tuple[bool, bool], RawDataElement] = {}

    def set_in(self, ds: Dataset) -> None:
        implicit, little = ds.original_encoding
        if implicit is None or little is None or (implicit and not little):
            ds.DeidentificationMethodCodeSequence = Sequence([code_item(*c) for c in self.codes])
            return
        raw = self._encoded.get((implicit, little))
        if raw is None:
            raw = self._encoded[(implicit, little)] = self._encode(implicit, little)
        ds[METHOD_CODES] = raw

    def _encode(self, implicit: bool, little: bool) -> RawDataElement:
        holder = Dataset()
        holder.DeidentificationMethodCodeSequence = Sequence([code_item(*c) for c in self.codes])
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = implicit, little
        write_data_element(fp, holder[METHOD_CODES])
        raw = next(data_element_generator(io.BytesIO(fp.getvalue()), implicit, little))
        assert isinstance(raw, RawDataElement)
        assert raw.tag == METHOD_CODES
        return raw
