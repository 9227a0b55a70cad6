"""What a DICOM file must hold before ingest stores anything of it.

``validate`` checks the attributes ingest reads, links and indexes, and refuses the file
with one ``InvalidInput`` (422) that names every attribute at fault, in words and in a
problem+json ``attributes`` member (keyword, tag, problem). It runs before the encrypted
object is written and before any row, so a refused file leaves nothing behind.

* **UIDs**: SOP Class (0008,0016), SOP Instance (0008,0018), Study Instance (0020,000D)
  and Series Instance (0020,000E) are required, one value each, and well formed (PS3.5
  §9.1): digits and dots (``^[0-9]+(\\.[0-9]+)*$``), at most 64 characters, no component
  with a leading zero except "0" itself. The instance UID names the object everywhere
  downstream (release archives use it as a file name), so nothing else is let through.
* **Patient**: PatientID (0010,0020) present, one value, at most 64 characters (LO), no
  control characters (it becomes the subject's pseudonym); IssuerOfPatientID (0010,0021)
  at most 64; PatientName (0010,0010) at most three component groups of at most 64
  characters each; PatientBirthDate (0010,0030) empty or a real date written as eight
  ASCII digits (YYYYMMDD); PatientSex (0010,0040) empty, M, F or O.
* **Indexed codes**: Modality (0008,0060), BodyPartExamined (0018,0015) and
  BurnedInAnnotation (0028,0301) one value of at most 16 characters (CS); Manufacturer
  (0008,0070) one value of at most 64 (LO).
* **Image attributes**: Rows (0028,0010) and Columns (0028,0011), when present, one
  positive integer each; NumberOfFrames (0028,0008), when present, one positive integer;
  the file meta's TransferSyntaxUID (0002,0010), when present, a well-formed UID.

Values are never echoed in a refusal: they may be the very identifiers the ledger keeps
out of its logs. Other attributes are stored as they come: real archives hold plenty of
harmless non-conformance, and de-identification rewrites them on the way out.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from ledger.errors import InvalidInput
from ledger.images.dicom_settings import quiet as quiet  # set on import: see there

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_UID = 64
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
CODES = ("Modality", "BodyPartExamined", "BurnedInAnnotation")
SEXES = frozenset({"M", "F", "O"})
CONTROL = re.compile(r"[\x00-\x1a\x1c-\x1f\x7f]")  # ESC (0x1b) starts ISO 2022 charsets


def tag_text(keyword: str) -> str:
    tag = Tag(keyword)
    return f"({tag.group:04X},{tag.element:04X})"


def uid_problem(value: str) -> str | None:
    """What makes ``value`` no valid UID, or None."""
    if not value:
        return "is empty"
    if len(value) > MAX_UID:
        return f"is {len(value)} characters long; a UID has at most {MAX_UID}"
    if not UID_RE.match(value):
        return "is not a UID: digits and dots only, no empty component"
    if any(len(part) > 1 and part.startswith("0") for part in value.split(".")):
        return "is not a UID: a component starts with a zero"
    return None


def frame_count(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def pixel_length_problem(ds: Dataset) -> str | None:
    """What is wrong when native pixel data is shorter than its attributes say (pydicom
    reads a cut-off file without complaint); None when it is whole or not native."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    try:
        if "PixelData" not in ds or syntax is None or syntax.is_compressed:
            return None
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
            samples = 2  # two chroma samples shared by each pair of pixels
        expected = (
            int(ds.Rows) * int(ds.Columns) * samples * frame_count(ds) * int(ds.BitsAllocated) + 7
        ) // 8
    except (AttributeError, TypeError, ValueError):
        return None
    length = len(ds.PixelData or b"")
    if length < expected:
        return f"truncated: pixel data has {length} of {expected} bytes"
    return None


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, keyword: str, problem: str) -> None:
        self.items.append({"keyword": keyword, "tag": tag_text(keyword), "problem": problem})

    def raise_any(self) -> None:
        if not self.items:
            return
        words = "; ".join(f"{i['keyword']} {i['tag']} {i['problem']}" for i in self.items)
        raise InvalidInput(f"the DICOM file is refused: {words}", attributes=self.items)


def _values(ds: Dataset, keyword: str) -> list[Any]:
    """The attribute's values (none when it is absent or empty)."""
    if keyword not in ds:
        return []
    value: Any = ds[keyword].value
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [] if value is None or value == "" else [value]


def _single(ds: Dataset, keyword: str, problems: _Problems) -> str | None:
    """The attribute's one value as text; None when absent or empty, or when it holds
    more than one value (then refused)."""
    values = _values(ds, keyword)
    if len(values) > 1:
        problems.add(keyword, f"has {len(values)} values; it takes one")
        return None
    return str(values[0]).strip() if values else None


def validate(ds: Dataset) -> None:
    """Refuse (InvalidInput, 422) a dataset ingest must not store; see the module."""
    problems = _Problems()
    for keyword in REQUIRED_UIDS[:2]:
        _uid(ds, keyword, problems)
    _patient(ds, problems)
    for keyword in REQUIRED_UIDS[2:]:
        _uid(ds, keyword, problems)
    for keyword in CODES:
        text = _single(ds, keyword, problems)
        if text is not None and len(text) > 16:
            problems.add(keyword, f"is {len(text)} characters long; at most 16 (CS)")
    text = _single(ds, "Manufacturer", problems)
    if text is not None and len(text) > 64:
        problems.add("Manufacturer", f"is {len(text)} characters long; at most 64 (LO)")
    for keyword in ("NumberOfFrames", "Rows", "Columns"):
        _positive(ds, keyword, problems)
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    problem = uid_problem(syntax.strip().rstrip("\x00")) if syntax else None
    if problem is not None:
        problems.add("TransferSyntaxUID", problem)
    problems.raise_any()


def _uid(ds: Dataset, keyword: str, problems: _Problems) -> None:
    values = _values(ds, keyword)
    if keyword not in ds:
        problems.add(keyword, "is missing")
    elif len(values) != 1:
        problems.add(keyword, "is empty" if not values else f"has {len(values)} values")
    else:
        problem = uid_problem(str(values[0]).strip().rstrip("\x00"))
        if problem is not None:
            problems.add(keyword, problem)


def _patient(ds: Dataset, problems: _Problems) -> None:
    name = _single(ds, "PatientName", problems)
    if name is not None:
        groups = name.split("=")
        if len(groups) > 3:
            problems.add("PatientName", f"has {len(groups)} component groups; at most 3")
        elif any(len(group) > 64 for group in groups):
            problems.add("PatientName", "has a component group over 64 characters")
    ids = _values(ds, "PatientID")
    patient_id = str(ids[0]).strip() if len(ids) == 1 else ""
    if len(ids) > 1:
        problems.add("PatientID", f"has {len(ids)} values; it takes one")
    elif not patient_id:
        problems.add("PatientID", "is missing or empty: the file cannot be linked to a subject")
    elif len(patient_id) > 64:
        problems.add("PatientID", f"is {len(patient_id)} characters long; at most 64 (LO)")
    elif CONTROL.search(patient_id):
        problems.add("PatientID", "holds control characters")
    issuer = _single(ds, "IssuerOfPatientID", problems)
    if issuer is not None and len(issuer) > 64:
        problems.add("IssuerOfPatientID", f"is {len(issuer)} characters long; at most 64")
    birth = _single(ds, "PatientBirthDate", problems)
    if birth and not _is_date(birth):
        problems.add("PatientBirthDate", "is not a date written YYYYMMDD in ASCII digits")
    sex = _single(ds, "PatientSex", problems)
    if sex and sex not in SEXES:
        problems.add("PatientSex", "is not M, F or O")


def _is_date(text: str) -> bool:
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        return False
    try:
        date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return False
    return True


def _positive(ds: Dataset, keyword: str, problems: _Problems) -> None:
    if keyword not in ds:
        return
    values = _values(ds, keyword)
    if len(values) != 1:
        shown = "is empty" if not values else f"has {len(values)} values"
        problems.add(keyword, f"{shown}; it takes one positive integer")
        return
    try:
        number = int(str(values[0]).strip())
    except (TypeError, ValueError):
        problems.add(keyword, "is not an integer")
        return
    if number <= 0:
        problems.add(keyword, "is not a positive integer")
