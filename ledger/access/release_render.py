"""De-identified files for release, rendered without re-encoding their pixel data.

``archive.render`` reads a whole file with pydicom, de-identifies it and writes it all
again. Release never changes pixels: de-identification leaves them alone, and an image at
risk of burned-in text is read by OCR and quarantined, never masked, on this path
(``pixels.check`` in its quarantine mode). So for a file whose pixel data is its last
element, the header alone is parsed, de-identified and written, and the original Pixel
Data element's bytes follow it unchanged: the same bytes ``archive.render`` gives, without
parsing, copying and writing the largest part of the file again.

The splice is taken only where it is provably the same: little endian, the file meta's
transfer syntax the one the file was read in (public, not deflated), ``PixelData`` (OB or
OW, or implicit VR) the last element, of even defined length for a native transfer syntax
or encapsulated (for a compressed one) and ending at the file's end with its one sequence
delimiter, no command or file meta elements in the dataset, and nothing de-identification
adds sorted after the pixel data. The header is then written by pydicom's own writer
without the copies and checks ``save_as`` spends on cases ruled out. An image at risk of
burned-in text, and every other file, takes the whole-file path, which is
``archive.render``'s. ``tests/access/test_release_render.py`` compares the two byte for
byte.

``attributes`` gives the de-identified file's attributes as DICOM JSON (WADO-RS metadata):
the same de-identification and the same quarantine decisions, without the pixel data.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

from pydicom import dcmread
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info, writers
from pydicom.uid import UID
from pydicom.valuerep import CUSTOMIZABLE_CHARSET_VR, EXPLICIT_VR_LENGTH_32, VR

from ledger.access.archive import Prepared, Quarantined, blank_preamble
from ledger.images import pixels
from ledger.images.deid import Deidentifier, Result
from ledger.images.store import ObjectStore, unseal

PIXEL_DATA = 0x7FE00010
GROUP_LENGTH = 0x00020000  # File Meta Information Group Length
PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
ITEM_LE = b"\xfe\xff\x00\xe0"
SEQUENCE_DELIMITER_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
UNDEFINED = 0xFFFFFFFF
BULK_KEYWORDS = pixels.PIXEL_KEYWORDS

Pieces = tuple[bytes, memoryview]


def original(store: ObjectStore, item: Prepared) -> bytes:
    """The decrypted original (AES-GCM, authenticated): once per file."""
    return unseal(item.data_key, item.address, store.get(item.address))


def render(store: ObjectStore, engine: Deidentifier, item: Prepared) -> bytes:
    """The de-identified file, as ``archive.render`` gives it; Quarantined when it must
    not leave."""
    return b"".join(render_pieces(store, engine, item))


def render_pieces(store: ObjectStore, engine: Deidentifier, item: Prepared) -> Pieces:
    """The de-identified file as two pieces to send one after the other: everything
    before the pixel data, then the original Pixel Data element (a view, not a copy)."""
    return render_data(original(store, item), engine)


def render_data(data: bytes, engine: Deidentifier) -> Pieces:
    """``render_pieces`` of the decrypted original ``data``."""
    spliced = _spliced(data, engine)
    if spliced is not None:
        return spliced
    return _whole(data, engine), memoryview(b"")


def attributes(store: ObjectStore, engine: Deidentifier, item: Prepared) -> dict[str, Any]:
    """The de-identified file's attributes as DICOM JSON, without its pixel data: read
    back from what ``render`` gives, so metadata and file never differ; Quarantined as
    for the file itself."""
    data = original(store, item)
    spliced = _spliced(data, engine)
    if spliced is not None:
        ds = dcmread(io.BytesIO(spliced[0]), force=True)  # the header: it ends at the pixels
    else:
        ds = dcmread(io.BytesIO(_whole(data, engine)), force=True)
        for keyword in BULK_KEYWORDS:
            if keyword in ds:
                del ds[keyword]
    # An attribute whose value cannot be shown in JSON (an IS of "1A") is left out.
    out: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=1 << 30, suppress_invalid_tags=True)
    return out


def _deidentify(ds: Dataset, engine: Deidentifier) -> Result:
    result = engine.apply(ds)
    if result.quarantined:
        raise Quarantined(result.reasons)
    return result


def _check_pixels(ds: Dataset) -> None:
    burned = pixels.check(ds)  # text OCR finds in an image at risk is refused, never masked
    if burned.quarantine is not None:
        raise Quarantined([burned.quarantine])


def _whole(data: bytes, engine: Deidentifier) -> bytes:
    """``archive.render``'s path: the whole file parsed, de-identified, checked, written."""
    ds = dcmread(io.BytesIO(data), force=True)
    _deidentify(ds, engine)
    _check_pixels(ds)
    blank_preamble(ds)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def _at_risk(header: Dataset) -> bool:
    """``pixels.at_risk`` for a header parsed without its pixel data (which it has)."""
    header.add_new(PIXEL_DATA, "OB", b"")
    try:
        return pixels.at_risk(header) is not None
    finally:
        del header[PIXEL_DATA]


def _spliced(data: bytes, engine: Deidentifier) -> Pieces | None:
    """The header de-identified and written, and the original pixel element; None when
    the splice might differ from the whole-file path."""
    done = splice(data, engine)
    return None if done is None else (done.head, memoryview(data)[done.start :])


@dataclass
class Spliced:
    """What the splice made of one file: the header (``head``), where the original's
    pixel element starts, the engine's result, and, when asked for and where each part
    was written element by element, the bytes of each element written, by tag."""

    head: bytes
    start: int
    syntax: UID
    result: Result
    meta_segments: list[tuple[int, bytes]] | None = None
    segments: list[tuple[int, bytes]] | None = None


def splice(data: bytes, engine: Deidentifier, *, segments: bool = False) -> Spliced | None:
    """``_spliced``, keeping what ``render_reuse`` renders a series' next files from."""
    fp = io.BytesIO(data)
    ds = dcmread(fp, force=True, stop_before_pixels=True)
    start = fp.tell()
    if not _splice_safe(ds, data, start):
        return None
    result = _deidentify(ds, engine)
    if _at_risk(ds) or max(map(int, ds.keys()), default=0) >= PIXEL_DATA:
        return None
    blank_preamble(ds)
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if not segments:
        return Spliced(_header_bytes(ds), start, syntax, result)
    meta: list[tuple[int, bytes]] = []
    elements: list[tuple[int, bytes]] = []
    head = _header_bytes(ds, meta, elements)
    return Spliced(head, start, syntax, result, meta or None, elements or None)


def _header_bytes(
    ds: FileDataset,
    meta_segments: list[tuple[int, bytes]] | None = None,
    segments: list[tuple[int, bytes]] | None = None,
) -> bytes:
    """What ``ds.save_as(out, enforce_file_format=False)`` writes, without what that
    spends on cases ``_splice_safe`` has ruled out: the copy of the file meta (this
    dataset is ours to change), working out the encoding (the transfer syntax's, which is
    the one the file was read in) and the checks for command or file meta elements in
    the dataset (there are none: group 0 and 2 send a file down the whole-file path)."""
    fp = DicomBytesIO()
    implicit, little = ds.original_encoding
    fp.is_implicit_VR, fp.is_little_endian = bool(implicit), bool(little)
    if ds.preamble:
        fp.write(ds.preamble)
        fp.write(b"DICM")
    if ds.file_meta:
        _write_file_meta(fp, ds.file_meta, meta_segments)
    if ds.original_character_set != ds._character_set:
        write_dataset(fp, ds)  # re-encoded in a new character set: pydicom's own way
    else:
        write_elements(fp, ds, segments)
    return fp.getvalue()


def _write_file_meta(
    fp: DicomBytesIO, meta: FileMetaDataset, segments: list[tuple[int, bytes]] | None = None
) -> None:
    """``write_file_meta_info(fp, meta, enforce_standard=False)``, its elements written
    by ``write_elements`` when that gives ``write_dataset``'s bytes: the file meta as
    read (explicit VR little endian), in its own character set; else pydicom's own."""
    tags = meta.keys()
    if meta.original_encoding != (False, True) or any(t.group != 2 for t in tags):
        write_file_meta_info(fp, meta, enforce_standard=False)  # converts, or refuses
        return
    if meta.original_character_set != meta._character_set:
        write_file_meta_info(fp, meta, enforce_standard=False)
        return
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_elements(buffer, meta, segments)
    if GROUP_LENGTH in meta:  # the first element written: rewritten with its value now
        meta.FileMetaInformationGroupLength = buffer.tell() - 12
        buffer.seek(0)
        write_data_element(buffer, meta[GROUP_LENGTH])
    fp.write(buffer.getvalue())


def write_elements(
    fp: DicomBytesIO, ds: Dataset, segments: list[tuple[int, bytes]] | None = None
) -> None:
    """``pydicom.filewriter.write_dataset`` for a dataset written in the encoding it was
    read in: the same bytes, element by element, with its per-element set-up (the
    character set's codecs, a buffer, the encoding looked up again) done once. Sequences,
    bulk values, raw elements without a VR and anything its writer would warn about or
    refuse are handed to ``write_data_element`` itself. ``segments`` (when given)
    collects each element's bytes by tag, in the order written (``render_reuse``)."""
    charset = ds.get("SpecificCharacterSet", default_encoding)
    encodings = convert_encodings(charset or [default_encoding])
    implicit = fp.is_implicit_VR
    scratch = DicomBytesIO()
    scratch.is_implicit_VR, scratch.is_little_endian = implicit, True
    for tag in sorted(ds.keys(), key=int):  # the tags' order, without BaseTag.__lt__
        if tag.element == 0 and tag.group > 6:
            continue  # retired Group Length: pydicom does not write it either
        elem = ds.get_item(tag)
        value = _value_bytes(scratch, elem, encodings, implicit)
        if value is None:
            start = fp.tell()
            write_data_element(fp, elem, charset)
            if segments is not None:
                segments.append((int(tag), fp.getvalue()[start:]))
            continue
        vr = str(elem.VR)
        length = len(value)
        if implicit:
            head = struct.pack("<HHI", tag.group, tag.element, length)
        elif vr in EXPLICIT_VR_LENGTH_32:
            head = struct.pack("<HH2sHI", tag.group, tag.element, vr.encode(), 0, length)
        else:
            head = struct.pack("<HH2sH", tag.group, tag.element, vr.encode(), length)
        fp.write(head)
        fp.write(value)
        if segments is not None:
            segments.append((int(tag), head + value))


def _value_bytes(
    scratch: DicomBytesIO, elem: DataElement | RawDataElement, encodings: list[str], implicit: bool
) -> bytes | None:
    """The element's value as ``write_data_element`` encodes it, or None to let it."""
    vr = elem.VR
    if vr is None or vr == "SQ" or (not implicit and len(vr) != 2):
        return None
    if isinstance(elem, RawDataElement):
        if elem.length == UNDEFINED:
            return None
        value = bytes(elem.value or b"")
    else:
        if vr not in writers or elem.is_undefined_length or elem.is_buffered:
            return None
        start = scratch.tell()
        if not elem.is_empty:
            fn, param = writers[VR(vr)]
            if vr in CUSTOMIZABLE_CHARSET_VR:
                fn(scratch, elem, encodings=encodings)  # type: ignore[operator]
            elif param is not None:
                fn(scratch, elem, param)  # type: ignore[operator]
            else:
                fn(scratch, elem)  # type: ignore[operator]
        value = scratch.getvalue()[start:]
    if not implicit and vr not in EXPLICIT_VR_LENGTH_32 and len(value) > 0xFFFF:
        return None  # pydicom warns and writes it as UN
    return value


def _splice_safe(ds: Dataset, data: bytes, start: int) -> bool:
    """Whether writing ``ds`` with its pixel data would give the header's bytes followed
    by ``data[start:]`` unchanged (see the module's docstring)."""
    if not isinstance(ds, FileDataset) or start >= len(data):
        return False
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not syntax:
        return False
    syntax = UID(str(syntax))
    if syntax.is_private or not syntax.is_transfer_syntax:
        return False
    if syntax.is_deflated or not syntax.is_little_endian:
        return False
    implicit = syntax.is_implicit_VR
    if ds.original_encoding != (implicit, True):
        return False
    if ds.preamble is not None and len(ds.preamble) != 128:
        return False  # save_as refuses it: so does the whole-file path
    if min(map(int, ds.keys()), default=0x00080000) < 0x00030000:
        return False  # command or file meta elements: save_as refuses them, likewise
    return pixels_at_end(data, start, syntax)


def pixels_at_end(data: bytes, start: int, syntax: UID) -> bool:
    """Whether ``data`` holds, from ``start`` to its end, one Pixel Data element that
    writing gives back unchanged in ``syntax`` (see the module's docstring)."""
    implicit = syntax.is_implicit_VR
    if data[start : start + 4] != PIXEL_TAG_LE:
        return False
    if implicit:
        length: int = struct.unpack_from("<I", data, start + 4)[0]
        value = start + 8
    else:
        vr = data[start + 4 : start + 6]
        if vr not in (b"OB", b"OW") or data[start + 6 : start + 8] != b"\x00\x00":
            return False
        length = struct.unpack_from("<I", data, start + 8)[0]
        value = start + 12
    if (length == UNDEFINED) != syntax.is_compressed:
        return False  # save_as would rewrite the length as the transfer syntax says
    if length != UNDEFINED:
        return length % 2 == 0 and value + length == len(data)
    # Encapsulated: items, then the sequence delimiter pydicom finds first, at the end.
    return bool(
        data[value : value + 4] == ITEM_LE
        and data.find(SEQUENCE_DELIMITER_LE[:4], value) == len(data) - 8
        and data.endswith(SEQUENCE_DELIMITER_LE)
    )
