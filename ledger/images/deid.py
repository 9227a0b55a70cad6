"""De-identification per DICOM PS3.15 Annex E, driven by the standard's table as data.

The rules come from table E.1-1 of the 2026c edition, read by ``deid_table`` (the 2024b
table plus the 35 attributes added since). Actions: ``X`` remove, ``Z`` empty, ``D`` dummy
value, ``K`` keep, ``U`` remap UID, ``C`` clean: dates shifted, free text cleaned by
``deid_text`` (an allow-list of clinical words; a value left with nothing useful gets the
basic profile's action instead). A compound action (``X/Z``, ...) becomes the choice that
keeps the attribute present, so output stays valid for any IOD (``deid_table.compound``).

Beyond the table: every private group is removed (unless ``retain_safe_private`` and the
creator is on the safe list), curves (50xx) and overlays (60xx) are removed, sequences are
walked recursively (free text inside a cleaned sequence is cleaned too; SR Text Value is
treated as a descriptor), PatientID/PatientName become the keyed pseudonym, UIDs become
``2.25.<HMAC>`` (consistent for one key and scope, e.g. a grant), dates move by a keyed
per-patient offset that keeps intervals, and ``PatientIdentityRemoved``,
``DeidentificationMethod`` and ``DeidentificationMethodCodeSequence`` (CID 7050) record
what was done. The pseudonym comes from PatientID; without one, from what else identifies
the patient, never shared by files that may be of different people (``identity``). Pixel
data is never touched; images that may carry burned-in text are reported for quarantine.

An element the profile keeps is left as pydicom read it, undecoded, when its VR says it
holds no sequence or text to clean (``deid_text.known_vr``): it is written back byte for
byte, and most of a real header costs nothing to decode or encode.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from ledger.images.deid_options import Option as Option
from ledger.images.deid_table import CID7050, descriptor_tags
from ledger.images.deid_table import TABLE_EDITION as TABLE_EDITION
from ledger.images.deid_table import rules as rules
from ledger.images.deid_text import (
    CODED,
    FREE_TEXT_VRS,
    HeaderValues,
    TextCleaner,
    header_values,
    known_vr,
)
from ledger.images.deid_values import MethodCodes, dummy, map_values, shift, text, values
from ledger.images.dicom_settings import quiet as quiet  # set on import: see there
from ledger.images.sop_classes import SECONDARY_CAPTURE as SECONDARY_CAPTURE
from ledger.images.sop_classes import header_quarantine

MAX_SHIFT_DAYS = 3650
CACHED = 100_000  # pseudonyms, date offsets and UIDs an engine remembers (a long batch)

DEFAULT_OPTIONS = frozenset(
    {
        Option.retain_long_modified_dates,
        Option.retain_patient_characteristics,
        Option.clean_descriptors,
    }
)

# Private creators whose listed elements carry no identity (Retain Safe Private Option).
SAFE_PRIVATE: dict[str, set[int]] = {}

# Attributes ``apply`` reads or sets by name for the whole file, beside the walk over each
# element: identity, the quarantine rule and the record of what was done.
# ``tests/images/test_deid.py`` checks that ``apply`` decodes no other kept attribute.
FILE_LEVEL = frozenset(
    Tag(keyword)
    for keyword in (
        "PatientID",
        "IssuerOfPatientID",
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "PatientName",
        "PatientBirthDate",
        "StudyInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "BurnedInAnnotation",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
    )
)

# PatientID values that name nobody: files holding them do not share a patient.
NO_PATIENT_ID = frozenset({"", "UNKNOWN", "ANONYMOUS", "ANON", "NONE", "NULL", "N/A", "NA", "-"})


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
    edition: str = TABLE_EDITION  # of table E.1-1
    pseudonym_basis: str = ""  # what the pseudonym was derived from (see ``identity``)
    descriptors_cleaned: int = 0  # free-text values kept after cleaning
    descriptors_removed: int = 0  # free-text values removed, emptied or given a dummy
    words_replaced: int = 0  # words and patterns replaced in kept descriptors
    # What the walk used besides each element (pseudonym's date shift, identifying values):
    # ``walk_alone`` de-identifies more elements of the same file with it.
    context: _File | None = field(default=None, repr=False, compare=False)


@dataclass
class _File:
    """What the walk over one file needs besides the engine."""

    result: Result
    shift: timedelta
    header: HeaderValues
    cleaner: TextCleaner | None = None

    def clean(self, text: str, vr: str) -> tuple[str | None, int]:
        if self.cleaner is None:
            self.cleaner = TextCleaner(self.header)
        done = self.cleaner.clean(text, vr)
        return done.text, done.replaced


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
        self.basic = rules(frozenset())
        self.descriptors = descriptor_tags()
        self.edition = TABLE_EDITION
        self.uid_scope = uid_scope.encode()
        self.codes = MethodCodes([CID7050[None]] + [CID7050[o] for o in sorted(self.options)])
        self._uid_cache: dict[str, str] = {}
        self._pseudonyms: dict[tuple[str, str], str] = {}  # once per patient in a batch
        self._offsets: dict[str, timedelta] = {}

    # -- identities -------------------------------------------------------------------
    def pseudonym(self, patient_id: str, issuer: str = "") -> str:
        cached = self._pseudonyms.get((patient_id, issuer))
        if cached is None:
            digest = hmac.new(
                self.keys.patient, f"{issuer}|{patient_id}".encode(), hashlib.sha256
            ).hexdigest()
            cached = f"ANON-{digest[:20].upper()}"
            if len(self._pseudonyms) < CACHED:
                self._pseudonyms[(patient_id, issuer)] = cached
        return cached

    def identity(self, ds: Dataset) -> tuple[str, str]:
        """The pseudonym of the patient of ``ds`` and what it was derived from.

        PatientID (with its issuer) when it names someone. Without it, files must not
        share a pseudonym, and so a date shift, unless they share a patient: Other Patient
        IDs, else Patient's Name with Birth Date, else the study (one pseudonym per study),
        else the instance. Derived values are keyed apart from any PatientID."""
        patient_id = str(ds.get("PatientID", "") or "")  # as is: pseudonyms stay as they were
        if patient_id.strip().upper() not in NO_PATIENT_ID:
            issuer = str(ds.get("IssuerOfPatientID", "") or "")
            return self.pseudonym(patient_id, issuer), "PatientID"
        others = _other_ids(ds)
        if others:
            other_id, other_issuer = others[0]
            return self.pseudonym(f"other|{other_id}", f"\x00{other_issuer}"), "OtherPatientIDs"
        name = "^".join(p.strip() for p in text(ds, "PatientName").upper().split("=")[0].split("^"))
        name, birth = name.rstrip("^"), text(ds, "PatientBirthDate")
        if name and birth:
            return self.pseudonym(f"name|{name}|{birth}", "\x00"), "PatientName+PatientBirthDate"
        for keyword in ("StudyInstanceUID", "SOPInstanceUID"):
            uid = text(ds, keyword)
            if uid:
                return self.pseudonym(f"{keyword}|{uid}", "\x00"), keyword
        return self.pseudonym(secrets.token_hex(16), "\x00"), "none (random)"

    def uid(self, value: str) -> str:
        cached = self._uid_cache.get(value)
        if cached is None:
            digest = hmac.new(
                self.keys.uid, self.uid_scope + b"|" + value.encode(), hashlib.sha256
            ).digest()
            cached = f"2.25.{int.from_bytes(digest[:16], 'big')}"
            if len(self._uid_cache) < CACHED:
                self._uid_cache[value] = cached
        return cached

    def date_offset(self, pseudonym: str) -> timedelta:
        cached = self._offsets.get(pseudonym)
        if cached is None:
            digest = hmac.new(self.keys.date, pseudonym.encode(), hashlib.sha256).digest()
            cached = timedelta(days=1 + int.from_bytes(digest[:4], "big") % MAX_SHIFT_DAYS)
            if len(self._offsets) < CACHED:
                self._offsets[pseudonym] = cached
        return cached

    # -- the walk -----------------------------------------------------------------------
    def apply(self, ds: Dataset) -> Result:
        """De-identify ``ds`` in place; ``Result.quarantined`` when pixels may show text."""
        result = Result()
        pseudonym, result.pseudonym_basis = self.identity(ds)
        shift = self.date_offset(pseudonym)
        file = result.context = _File(result, shift, header_values(ds, self.rules))
        self._walk(ds, file, cleaning=False)
        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = self._method(result, [c for c, _ in self.codes.codes])
        self.codes.set_in(ds)
        dates_kept = Option.retain_long_modified_dates in self.options
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if dates_kept else "REMOVED"
        meta: FileMetaDataset | None = getattr(ds, "file_meta", None)
        if meta is not None and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        reason = header_quarantine(
            str(ds.get("SOPClassUID", "") or ""), str(ds.get("BurnedInAnnotation", "") or "")
        )
        if reason is not None:
            result.quarantined = True
            result.reasons.append(reason)
        return result

    def walk_alone(self, ds: Dataset, like: Result) -> None:
        """De-identify the elements of ``ds`` as ``apply`` did each element of the file
        ``like`` is the result of: with that file's date shift and identifying values, and
        nothing else ``apply`` does for a whole file (``access.render_reuse``)."""
        file = like.context
        if file is None:
            raise ValueError("a result of apply is needed")
        self._walk(ds, _File(Result(), file.shift, file.header, file.cleaner), cleaning=False)

    def _method(self, result: Result, codes: list[str]) -> list[str]:
        """Deidentification Method (LO, 64 characters a value): the edition, the CID 7050
        codes, what became of free text and where the pseudonym came from."""
        out = [f"ledger PS3.15 {self.edition} Annex E table E.1-1", "CID 7050"]
        for code in codes:
            if len(out[-1]) + 1 + len(code) > 64:
                out.append("CID 7050")
            out[-1] += " " + code
        if Option.clean_descriptors in self.options:
            out.append(
                f"descriptors: {result.descriptors_cleaned} cleaned by allow-list, "
                f"{result.descriptors_removed} removed"
            )
        else:
            out.append(f"descriptors: {result.descriptors_removed} removed, basic profile")
        out.append(f"pseudonym from {result.pseudonym_basis}")
        return out

    def _walk(self, ds: Dataset, file: _File, cleaning: bool) -> None:
        """``cleaning``: inside a sequence the table cleans, where free text the table
        does not list is cleaned too (a Code Meaning, say), codes excepted."""
        result = file.result
        for raw in list(ds.elements()):
            tag: BaseTag = raw.tag
            group = tag.group
            if group == 0x0002:
                continue
            if tag.is_private:
                if not self._safe_private(ds, tag):
                    del ds[tag]
                    result.removed += 1
                continue
            if 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and group % 2 == 0):
                del ds[tag]  # curves and overlays: graphics may carry identity
                result.removed += 1
                continue
            action = self.rules.get(int(tag))
            if action is None or action == "K":
                vr = known_vr(raw)
                if vr is not None and not (cleaning and vr in FREE_TEXT_VRS):
                    continue  # kept as read: never decoded, written back byte for byte
            elem = ds[tag]
            if action is None and cleaning and elem.VR in FREE_TEXT_VRS and tag not in CODED:
                self._clean_text(ds, elem, file, fallback="D")
                continue
            if action is None or action == "K":
                if elem.VR == "SQ":
                    for item in elem.value:
                        self._walk(item, file, cleaning)
                continue
            self._act(ds, elem, action, file, cleaning)

    def _act(
        self, ds: Dataset, elem: DataElement, action: str, file: _File, cleaning: bool
    ) -> None:
        tag = elem.tag
        result = file.result
        if action in ("X", "Z", "D") and int(tag) in self.descriptors:
            result.descriptors_removed += 1
        if action == "X":
            del ds[tag]
            result.removed += 1
        elif elem.VR == "SQ":
            if action == "Z":
                elem.value = Sequence()
                result.replaced += 1
            else:  # D, U, C: keep the structure, de-identify inside
                for item in elem.value:
                    self._walk(item, file, cleaning or action == "C")
        elif action == "Z":
            elem.value = None
            result.replaced += 1
        elif action == "U":
            elem.value = map_values(elem.value, self.uid)
            result.uids += 1
        elif action == "D":
            elem.value = dummy(elem.VR)
            result.replaced += 1
        elif action == "C" and elem.VR in FREE_TEXT_VRS:
            self._clean_text(ds, elem, file, self.basic.get(int(tag), "D"))
        elif action == "C" and elem.VR in ("DA", "DT", "TM"):
            elem.value = shift(elem, file.shift)
            result.replaced += 1
        else:  # C on a value that cannot be shown clean (a code string, bytes)
            self._act(ds, elem, self.basic.get(int(tag), "X"), file, cleaning)

    def _clean_text(self, ds: Dataset, elem: DataElement, file: _File, fallback: str) -> None:
        """Clean each value of a free-text element; with nothing useful left in any, the
        basic profile's action (``fallback``) removes, empties or replaces it."""
        kept: list[str] = []
        for value in values(elem.value):
            cleaned, replaced = file.clean(value, elem.VR)
            if cleaned:
                kept.append(cleaned)
                file.result.words_replaced += replaced
        if not kept:
            if fallback not in ("X", "Z", "D"):
                fallback = "D"
            if int(elem.tag) not in self.descriptors:
                file.result.descriptors_removed += 1  # _act counts the table's own
            self._act(ds, elem, fallback, file, cleaning=False)
            return
        elem.value = kept if len(kept) > 1 else kept[0]
        file.result.descriptors_cleaned += 1
        file.result.replaced += 1

    def _safe_private(self, ds: Dataset, tag: BaseTag) -> bool:
        if Option.retain_safe_private not in self.options or not SAFE_PRIVATE:
            return False
        block = tag.element >> 8
        creator_tag = Tag(tag.group, block)
        if creator_tag not in ds:
            return False
        safe = SAFE_PRIVATE.get(str(ds[creator_tag].value))
        return safe is not None and (tag.element & 0xFF) in safe


def _other_ids(ds: Dataset) -> list[tuple[str, str]]:
    """Other Patient IDs (with their issuers, from the sequence) that name someone."""
    found = [(v.strip(), "") for v in values(ds.get("OtherPatientIDs"))]
    for item in ds.get("OtherPatientIDsSequence") or []:
        found.append((text(item, "PatientID"), text(item, "IssuerOfPatientID")))
    return sorted((i, s) for i, s in found if i.upper() not in NO_PATIENT_ID)
