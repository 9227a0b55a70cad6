"""The next file of a series rendered from the one before it, element by element.

A WADO-RS retrieval releases a study's files one after another, and the files of a series
differ in a handful of header elements (SOP Instance UID, Instance Number, image position,
acquisition time) and agree in the rest. ``release_render`` parses, de-identifies and
writes each whole header, most of what a release costs. Here the first file of a call is
rendered that way and kept as the reference, with the bytes each of its elements became.
A next file whose header differs from the reference's only in elements de-identification
treats one at a time is rendered from the reference's bytes, with just those elements
de-identified again, by the engine's own walk (``Deidentifier.walk_alone``), and written
by the same writer.

Why that gives the bytes rendering the whole file gives:

- What de-identification decides for a whole file (the pseudonym and where it came from,
  the date shift, the identifying values the text cleaner removes, the character set, the
  quarantine and burned-in text rules, what ``apply`` records) is decided from elements
  that must be byte-identical to the reference's: every element whose VR
  ``header_values`` decodes or cannot tell without decoding (dates, names, text, SQ, UN;
  a private element's text it skips, and the walk removes it) and the attributes read
  by name (``deid.FILE_LEVEL``, Modality, the character set).
  The Study and SOP Instance UIDs may differ only when the pseudonym came from a patient
  attribute, not from them.
- Any other element is de-identified by its tag, VR and value alone (a kept value left
  as read, a UID remapped, a time checked, a private element removed) and written alone:
  the walk and writer run on a dataset holding the differing elements.
- The file meta is the reference's, with the new Media Storage SOP Instance UID (the
  instance's new UID, as ``apply`` sets it) and the group length counted again.

A file with other differences (an element added or missing, another VR, a differing
date), or one the splice does not take, renders the whole way and becomes the reference.
A reference is used only once its own differing-kind elements, walked alone, give back
the bytes the whole render gave them. ``tests/access/test_render_reuse.py`` holds the two
paths to the same bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.tag import Tag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from ledger.access import release_render
from ledger.access.archive import Prepared
from ledger.access.release_render import PIXEL_DATA, UNDEFINED
from ledger.images.deid import FILE_LEVEL, Deidentifier, Option
from ledger.images.deid_text import READ_VRS
from ledger.images.part10 import PREAMBLE
from ledger.images.store import ObjectStore

MEDIA_SOP_INSTANCE = 0x00020003
GROUP_LENGTH = 0x00020000
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
LONG_VRS = frozenset(str(v).encode() for v in EXPLICIT_VR_LENGTH_32)
KNOWN_VRS = frozenset(v.value.encode() for v in VR if len(v.value) == 2)
# Read by name beside ``deid.FILE_LEVEL``: by the burned-in text rule (Modality), the
# writer (the character set) and pydicom, which reads the pixel representation and bits
# allocated to settle a VR the dictionary gives as "US or SS" or "OB or OW".
READ_BY_NAME = FILE_LEVEL | {
    Tag(keyword)
    for keyword in (
        "Modality",
        "SpecificCharacterSet",
        "PixelRepresentation",
        "BitsAllocated",
        "WaveformBitsAllocated",
    )
}
UID_BASED = {Tag("StudyInstanceUID"), Tag("SOPInstanceUID")}
PATIENT_BASES = frozenset({"PatientID", "OtherPatientIDs", "PatientName+PatientBirthDate"})
SOP_INSTANCE = Tag("SOPInstanceUID")

Element = tuple[int, bytes, bytes]  # tag, VR, the element's bytes as in the file


@dataclass(frozen=True)
class Header:
    """A file's header as raw elements: the file meta's and the dataset's up to the
    pixel data, which starts at ``pixels``."""

    meta: tuple[Element, ...]
    elements: tuple[Element, ...]
    pixels: int


@dataclass(frozen=True)
class Reference:
    """A file rendered the whole way, and what each of its elements became."""

    header: Header
    done: release_render.Spliced
    meta_out: tuple[tuple[int, bytes], ...]
    out: dict[int, bytes]  # the de-identified dataset's elements by tag, as written
    variable: frozenset[int]  # tags whose elements may differ in a next file


class SeriesRenderer:
    """Renders the files of one call in turn (see the module's docstring)."""

    def __init__(self, store: ObjectStore, engine: Deidentifier) -> None:
        self.store, self.engine = store, engine
        self.reference: Reference | None = None
        self.reused = 0  # files rendered from a reference (read by tests and benchmarks)

    def render(self, item: Prepared) -> release_render.Pieces:
        """The de-identified file, as ``release_render.render_pieces`` gives it;
        Quarantined when it must not leave."""
        data = release_render.original(self.store, item)
        header = parse(data)
        if header is not None and self.reference is not None:
            head = self._from_reference(self.reference, header, data)
            if head is not None:
                self.reused += 1
                return head, memoryview(data)[header.pixels :]
        done = release_render.splice(data, self.engine, segments=header is not None)
        if done is None:
            return release_render.render_data(data, self.engine)
        if header is not None and header.pixels == done.start:
            self.reference = self._reference(header, done)
        return done.head, memoryview(data)[done.start :]

    def render_file(self, item: Prepared) -> bytes:
        """``render`` as one file (``release_render.render``'s bytes)."""
        return b"".join(self.render(item))

    def _reference(self, header: Header, done: release_render.Spliced) -> Reference | None:
        if done.meta_segments is None or done.segments is None:
            return None
        if Option.retain_safe_private in self.engine.options:
            return None  # whether a private element is kept depends on its creator's
        fixed = set(READ_BY_NAME)
        if done.result.pseudonym_basis in PATIENT_BASES:
            fixed -= UID_BASED
        variable = frozenset(
            tag
            for tag, vr, _ in header.elements
            if tag not in fixed
            and vr not in (b"SQ", b"UN")
            and (vr.decode() not in READ_VRS or tag >> 16 & 1)  # private: never read
        )
        reference = Reference(
            header, done, tuple(done.meta_segments), dict(done.segments), variable
        )
        # Used only if its own variable elements, walked alone, give back what the whole
        # render gave them, and its header comes back the same from the parts.
        mine = [e for e in header.elements if e[0] in variable]
        alone = self._alone(reference, mine)
        if alone is None:
            return None
        segments, uid = alone
        if any(reference.out.get(tag) != seg for tag, seg in segments.items()):
            return None
        if any(tag in reference.out and tag not in segments for tag in variable):
            return None
        if self._head(reference, {e[0] for e in mine}, segments, uid) != done.head:
            return None
        return reference

    def _from_reference(self, reference: Reference, header: Header, data: bytes) -> bytes | None:
        old = reference.header
        if len(header.elements) != len(old.elements) or len(header.meta) != len(old.meta):
            return None
        changed: list[Element] = []
        for new, was in zip(header.elements, old.elements, strict=True):
            if new[0] != was[0] or new[1] != was[1]:
                return None
            if new[2] != was[2]:
                if new[0] not in reference.variable:
                    return None
                changed.append(new)
        for new, was in zip(header.meta, old.meta, strict=True):
            if new[0] != was[0] or new[1] != was[1]:
                return None
            if new[2] != was[2] and new[0] not in (MEDIA_SOP_INSTANCE, GROUP_LENGTH):
                return None
        if not release_render.pixels_at_end(data, header.pixels, reference.done.syntax):
            return None
        alone = self._alone(reference, changed)
        if alone is None:
            return None
        segments, uid = alone
        return self._head(reference, {e[0] for e in changed}, segments, uid)

    def _alone(
        self, reference: Reference, elements: list[Element]
    ) -> tuple[dict[int, bytes], str | None] | None:
        """``elements`` de-identified and written on their own with the reference's
        context: their bytes by tag (one the walk removed has none) and the instance's
        new UID when it is among them."""
        ds = Dataset()
        for tag, vr, raw in elements:
            at = 12 if vr in LONG_VRS else 8
            ds[tag] = RawDataElement(Tag(tag), vr.decode(), len(raw) - at, raw[at:], 0, False, True)
        self.engine.walk_alone(ds, reference.done.result)
        segments: list[tuple[int, bytes]] = []
        release_render.write_elements(_buffer(), ds, segments)
        found = dict(segments)
        if len(found) != len(segments):
            return None
        uid = ds.get("SOPInstanceUID") if SOP_INSTANCE in ds else None
        return found, None if uid is None else str(uid)

    def _head(
        self,
        reference: Reference,
        changed: set[int],
        segments: dict[int, bytes],
        uid: str | None,
    ) -> bytes:
        """The header: zero preamble, the meta (naming ``uid``, when given), and the
        reference's elements with the ``changed`` ones' new ``segments`` in their place."""
        meta = [
            (
                tag,
                _written(MEDIA_SOP_INSTANCE, "UI", uid)
                if tag == MEDIA_SOP_INSTANCE and uid
                else seg,
            )
            for tag, seg in reference.meta_out
        ]
        body = b"".join(seg for tag, seg in meta if tag != GROUP_LENGTH)
        if any(tag == GROUP_LENGTH for tag, _ in meta):
            body = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)) + body
        out = {t: s for t, s in reference.out.items() if t not in changed}
        out.update(segments)
        return PREAMBLE + b"DICM" + body + b"".join(out[t] for t in sorted(out))


def _buffer() -> DicomBytesIO:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = False, True
    return fp


def _written(tag: int, vr: str, value: str) -> bytes:
    """One element as the writer writes it."""
    ds = Dataset()
    ds[tag] = DataElement(tag, vr, value)
    segments: list[tuple[int, bytes]] = []
    release_render.write_elements(_buffer(), ds, segments)
    return segments[0][1]


def parse(data: bytes) -> Header | None:
    """The raw elements of a Part 10 file in explicit VR little endian with a preamble,
    up to its pixel data; None for anything else (those render the whole way)."""
    if data[128:132] != b"DICM":
        return None
    meta: list[Element] = []
    pos = 132
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        found = _element_at(data, pos)
        if found is None:
            return None
        tag, vr, end = found
        meta.append((tag, vr, data[pos:end]))
        pos = end
    elements: list[Element] = []
    while pos + 8 <= len(data):
        group, number = struct.unpack_from("<HH", data, pos)
        tag = group << 16 | number
        if tag == PIXEL_DATA:
            return Header(tuple(meta), tuple(elements), pos)
        if elements and tag <= elements[-1][0]:
            return None  # out of order: pydicom would sort it, and so must the whole path
        found = _element_at(data, pos)
        if found is None:
            return None
        _, vr, end = found
        elements.append((tag, vr, data[pos:end]))
        pos = end
    return None


def _element_at(data: bytes, pos: int) -> tuple[int, bytes, int] | None:
    """The tag, VR and end of the explicit VR little endian element at ``pos``."""
    group, number = struct.unpack_from("<HH", data, pos)
    vr = data[pos + 4 : pos + 6]
    if vr not in KNOWN_VRS:
        return None
    if vr in LONG_VRS:
        if pos + 12 > len(data) or data[pos + 6 : pos + 8] != b"\x00\x00":
            return None
        length = struct.unpack_from("<I", data, pos + 8)[0]
        value = pos + 12
    else:
        length = struct.unpack_from("<H", data, pos + 6)[0]
        value = pos + 8
    if length == UNDEFINED:
        end = _sequence_end(data, value) if vr == b"SQ" else None
    else:
        end = value + length
    if end is None or end > len(data):
        return None
    return group << 16 | number, vr, end


def _sequence_end(data: bytes, pos: int) -> int | None:
    """Where an undefined-length sequence whose items start at ``pos`` ends."""
    while pos + 8 <= len(data):
        group, number, length = struct.unpack_from("<HHI", data, pos)
        tag = group << 16 | number
        if tag == SEQUENCE_END:
            return pos + 8
        if tag != ITEM:
            return None
        if length != UNDEFINED:
            pos += 8 + length
            continue
        pos += 8
        while True:  # an undefined-length item: its elements, then its delimiter
            if pos + 8 > len(data):
                return None
            group, number = struct.unpack_from("<HH", data, pos)
            if group << 16 | number == ITEM_END:
                pos += 8
                break
            found = _element_at(data, pos)
            if found is None:
                return None
            pos = found[2]
    return None
