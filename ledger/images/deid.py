"""De-identification per DICOM PS3.15 Annex E, driven by the standard's table as data.

The rules come from ``data/confidentiality_profile_attributes.json`` (table E.1-1: 621
attributes, the basic profile's action and each option's action). Actions:

* ``X`` remove, ``Z`` empty, ``D`` dummy value, ``K`` keep, ``U`` remap UID,
  ``C`` clean (dates shifted; descriptors kept with identifying values redacted);
* compound actions (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) depend on the IOD's
  type for the attribute, which a generic engine does not know: we take the choice that
  keeps the attribute present (``D`` over ``Z`` over ``X``; ``U`` for ``U*``) so output
  stays valid for any IOD, and the value carries nothing identifying either way.

Beyond the table: every private group is removed (unless ``retain_safe_private`` and the
creator is on the safe list), curves (50xx) and overlays (60xx) are removed, sequences are
walked recursively, PatientID/PatientName become the keyed pseudonym, UIDs become
``2.25.<HMAC>`` (consistent for one key and scope, e.g. a grant), dates move by a keyed
per-patient offset that keeps intervals, and ``PatientIdentityRemoved`` plus
``DeidentificationMethodCodeSequence`` (CID 7050) record what was done. Pixel data is
never touched; images that may carry burned-in text are reported for quarantine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from importlib import resources
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from ledger.images.deid_options import Option as Option

TABLE = "data/confidentiality_profile_attributes.json"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MAX_SHIFT_DAYS = 3650
DUMMY_DATE = "19000101"
REDACTED = "REMOVED"


# CID 7050 codes for what was applied.
CID7050 = {
    None: ("113100", "Basic Application Confidentiality Profile"),
    Option.retain_long_modified_dates: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.retain_patient_characteristics: ("113108", "Retain Patient Characteristics Option"),
    Option.retain_device_identity: ("113109", "Retain Device Identity Option"),
    Option.retain_institution_identity: ("113112", "Retain Institution Identity Option"),
    Option.clean_descriptors: ("113105", "Clean Descriptors Option"),
    Option.clean_structured_content: ("113104", "Clean Structured Content Option"),
    Option.clean_graphics: ("113103", "Clean Graphics Option"),
    Option.retain_safe_private: ("113111", "Retain Safe Private Option"),
}

DEFAULT_OPTIONS = frozenset(
    {
        Option.retain_long_modified_dates,
        Option.retain_patient_characteristics,
        Option.clean_descriptors,
    }
)

# Private creators whose listed elements carry no identity (Retain Safe Private Option).
SAFE_PRIVATE: dict[str, set[int]] = {}

PATIENT_ID = Tag(0x0010, 0x0020)
PATIENT_NAME = Tag(0x0010, 0x0010)
TEXT_VRS = {"LO", "LT", "SH", "ST", "UT", "PN", "UC", "CS", "AE"}
DATE_RE = re.compile(r"^\d{8}$")


@dataclass(frozen=True)
class Keys:
    """Secrets of one de-identification domain, derived from one 32-byte key."""

    uid: bytes
    date: bytes
    patient: bytes

    @classmethod
    def derive(cls, key: bytes) -> Keys:
        def sub(label: bytes) -> bytes:
            return hmac.new(key, b"ledger-deid/" + label, hashlib.sha256).digest()

        return cls(sub(b"uid"), sub(b"date"), sub(b"patient"))


@dataclass
class Result:
    quarantined: bool = False
    reasons: list[str] = field(default_factory=list)
    removed: int = 0
    replaced: int = 0
    uids: int = 0


@cache
def rules(options: frozenset[Option]) -> dict[int, str]:
    """Tag → action for a set of options; the groups with ``xx`` apply to every group."""
    text = resources.files("ledger.images").joinpath(TABLE).read_text()
    out: dict[int, str] = {}
    for row in json.loads(text):
        tag_id = row["id"]
        if len(tag_id) != 8 or "x" in tag_id:
            continue  # 50xxxxxx, 60xx...: handled as groups; private: handled as parity
        action = _compound(row["basicProfile"])
        chosen = [row[o.value] for o in options if o.value in row]
        if "C" in chosen:
            action = "C"
        elif "K" in chosen:
            action = "K"
        out[int(tag_id, 16)] = action
    return out


def _compound(action: str) -> str:
    if "/" not in action:
        return action
    parts = action.rstrip("*").split("/")
    for preferred in ("U", "D", "Z", "X"):
        if preferred in parts:
            return preferred
    return parts[0]


class Deidentifier:
    """One engine per key, options and UID scope; reusable for many files."""

    def __init__(
        self,
        key: bytes,
        options: Iterable[Option] = DEFAULT_OPTIONS,
        *,
        uid_scope: str = "",
    ) -> None:
        self.keys = Keys.derive(key)
        self.options = frozenset(options)
        self.rules = rules(self.options)
        self.uid_scope = uid_scope.encode()
        self._uid_cache: dict[str, str] = {}

    # -- identities -------------------------------------------------------------------
    def pseudonym(self, patient_id: str, issuer: str = "") -> str:
        digest = hmac.new(
            self.keys.patient, f"{issuer}|{patient_id}".encode(), hashlib.sha256
        ).hexdigest()
        return f"ANON-{digest[:20].upper()}"

    def uid(self, value: str) -> str:
        cached = self._uid_cache.get(value)
        if cached is None:
            digest = hmac.new(
                self.keys.uid, self.uid_scope + b"|" + value.encode(), hashlib.sha256
            ).digest()
            cached = self._uid_cache[value] = f"2.25.{int.from_bytes(digest[:16], 'big')}"
        return cached

    def date_offset(self, pseudonym: str) -> timedelta:
        digest = hmac.new(self.keys.date, pseudonym.encode(), hashlib.sha256).digest()
        return timedelta(days=1 + int.from_bytes(digest[:4], "big") % MAX_SHIFT_DAYS)

    # -- the walk -----------------------------------------------------------------------
    def apply(self, ds: Dataset) -> Result:
        """De-identify ``ds`` in place; ``Result.quarantined`` when pixels may show text."""
        result = Result()
        patient_id = str(ds.get("PatientID", "") or "")
        issuer = str(ds.get("IssuerOfPatientID", "") or "")
        pseudonym = self.pseudonym(patient_id, issuer)
        shift = self.date_offset(pseudonym)
        phi = _identifying_values(ds, self.rules)
        self._walk(ds, result, shift, phi)
        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        ds.PatientIdentityRemoved = "YES"
        codes = [CID7050[None]] + [CID7050[o] for o in sorted(self.options)]
        ds.DeidentificationMethod = "ledger PS3.15 E.1 " + " ".join(c for c, _ in codes)
        ds.DeidentificationMethodCodeSequence = Sequence([_code(*c) for c in codes])
        dates_kept = Option.retain_long_modified_dates in self.options
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if dates_kept else "REMOVED"
        meta: FileMetaDataset | None = getattr(ds, "file_meta", None)
        if meta is not None and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
        sop_class = str(ds.get("SOPClassUID", "") or "")
        if burned == "YES":
            result.quarantined = True
            result.reasons.append("BurnedInAnnotation is YES")
        elif sop_class.startswith(SECONDARY_CAPTURE) and burned != "NO":
            result.quarantined = True
            result.reasons.append("secondary capture without BurnedInAnnotation NO")
        return result

    def _walk(self, ds: Dataset, result: Result, shift: timedelta, phi: list[str]) -> None:
        for elem in list(ds):
            tag: BaseTag = elem.tag
            group = tag.group
            if group == 0x0002:
                continue
            if tag.is_private:
                if not self._safe_private(ds, elem):
                    del ds[tag]
                    result.removed += 1
                continue
            if 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and group % 2 == 0):
                del ds[tag]  # curves and overlays: graphics may carry identity
                result.removed += 1
                continue
            action = self.rules.get(int(tag))
            if action is None or action == "K":
                if elem.VR == "SQ":
                    for item in elem.value:
                        self._walk(item, result, shift, phi)
                continue
            self._act(ds, elem, action, result, shift, phi)

    def _act(
        self,
        ds: Dataset,
        elem: DataElement,
        action: str,
        result: Result,
        shift: timedelta,
        phi: list[str],
    ) -> None:
        tag = elem.tag
        if action == "X":
            del ds[tag]
            result.removed += 1
        elif elem.VR == "SQ":
            if action == "Z":
                elem.value = Sequence()
                result.replaced += 1
            else:  # D, U, C: keep the structure, de-identify inside
                for item in elem.value:
                    self._walk(item, result, shift, phi)
        elif action == "Z":
            elem.value = None if elem.VR != "SQ" else Sequence()
            result.replaced += 1
        elif action == "U":
            elem.value = _map_values(elem.value, self.uid)
            result.uids += 1
        elif action == "D":
            elem.value = _dummy(elem.VR)
            result.replaced += 1
        elif action == "C":
            elem.value = self._clean(elem, shift, phi)
            result.replaced += 1

    def _clean(self, elem: DataElement, shift: timedelta, phi: list[str]) -> Any:
        vr = elem.VR
        if vr == "DA":
            return _map_values(elem.value, lambda v: _shift_date(v, shift))
        if vr == "DT":
            return _map_values(elem.value, lambda v: _shift_date(v[:8], shift) + v[8:])
        if vr == "TM":
            return elem.value
        if vr in TEXT_VRS:
            return _map_values(elem.value, lambda v: _redact(str(v), phi))
        return _dummy(vr)

    def _safe_private(self, ds: Dataset, elem: DataElement) -> bool:
        if Option.retain_safe_private not in self.options or not SAFE_PRIVATE:
            return False
        block = elem.tag.element >> 8
        creator_tag = Tag(elem.tag.group, block)
        if creator_tag not in ds:
            return False
        safe = SAFE_PRIVATE.get(str(ds[creator_tag].value))
        return safe is not None and (elem.tag.element & 0xFF) in safe


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _map_values(value: Any, fn: Any) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [fn(str(v)) for v in value]
    return fn(str(value))


def _shift_date(value: str, shift: timedelta) -> str:
    if not DATE_RE.match(value):
        return DUMMY_DATE if value else value
    try:
        day = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return DUMMY_DATE
    return (day - shift).strftime("%Y%m%d")


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


def _dummy(vr: str) -> Any:
    if vr in DUMMIES:
        return DUMMIES[vr]
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
        return 0
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b"\x00\x00"
    return REDACTED


def _identifying_values(ds: Dataset, table: dict[int, str]) -> list[str]:
    """Values the profile removes anywhere in the file (names, ids, ...), to redact from
    any descriptor that is kept. Longest first, so 'SMITH^JOHN' goes before 'JOHN'."""
    found: set[str] = set()

    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
                continue
            action = table.get(int(elem.tag))
            if action in (None, "K", "C", "U") or elem.VR not in TEXT_VRS | {"DA", "DT"}:
                continue
            values = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
            for v in values:
                text = str(v or "")
                found.update(p for p in re.split(r"[\^=\s]+", text) if len(p) >= 3)
                if len(text) >= 3:
                    found.add(text)

    visit(ds)
    return sorted(found, key=len, reverse=True)


def _redact(text: str, phi: list[str]) -> str:
    for value in phi:
        if value.lower() in text.lower():
            text = re.sub(re.escape(value), "***", text, flags=re.IGNORECASE)
    return text
