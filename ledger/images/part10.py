"""Writing a de-identified dataset as a DICOM Part 10 file, the way ``ledger deid`` does it
for every file of a batch.

The bytes are those of pydicom's ``dcmwrite(..., enforce_file_format=True)`` (a test holds
the two to the same output on pydicom's test files), without its deep copy of the file meta
(a tenth of a file's de-identification on plain CT): the dataset is ours, written once and
dropped, so its file meta is completed in place. The preamble is always 128 zero bytes: an
input's preamble is free bytes a person may have filled. Deflated or private transfer
syntaxes, and datasets that carry file meta elements in the wrong place, go through
``dcmwrite`` itself (its checks and errors apply unchanged).

The caller writes to a temporary name and renames it into place, without fsync: a batch is
re-run from its input after a crash, so a file lost in the page cache costs a re-run, while
an fsync per file would cost a disk flush per image; the atomic rename still means no
reader ever sees a half-written file under the final name.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomFile
from pydicom.filewriter import dcmwrite, write_dataset, write_file_meta_info

PREAMBLE = b"\x00" * 128


def write_part10(ds: Dataset, path: Path) -> None:
    """Write ``ds`` (with its ``file_meta``, transfer syntax included) to ``path``."""
    ds.preamble = None  # written as zeros, never copied
    meta = ds.file_meta
    for meta_keyword, keyword in (
        ("MediaStorageSOPClassUID", "SOPClassUID"),
        ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
    ):  # as dcmwrite does: the instance's own UIDs win
        value = ds.get(keyword)
        if meta.get(meta_keyword) is None or (value and value != meta.get(meta_keyword)):
            setattr(meta, meta_keyword, value)
    syntax = meta.get("TransferSyntaxUID")
    if (
        syntax is None
        or syntax.is_private
        or not syntax.is_transfer_syntax
        or syntax.is_deflated
        or min(ds.keys(), default=0x00080000) < 0x00030000  # groups 0 and 2 refused
    ):
        dcmwrite(path, ds, enforce_file_format=True)
        return
    if _read_otherwise(ds, syntax.is_implicit_VR, syntax.is_little_endian):
        # Read in another encoding than its transfer syntax names (a file that says
        # explicit VR and is implicit, as pydicom's SC_rgb_jpeg.dcm, which pydicom's own
        # dcmwrite cannot write either): its raw elements carry no VR to write.
        # Converting them looks each VR up (UN when unknown).
        for _ in ds.iterall():
            pass
    if "PixelData" in ds:
        ds["PixelData"].is_undefined_length = syntax.is_compressed
    fp = DicomFile(str(path), "wb")
    try:
        fp.is_implicit_VR, fp.is_little_endian = syntax.is_implicit_VR, syntax.is_little_endian
        fp.write(PREAMBLE + b"DICM")
        write_file_meta_info(fp, meta, enforce_standard=True)
        write_dataset(fp, ds)
    finally:
        fp.close()


def _read_otherwise(ds: Dataset, implicit: bool, little: bool) -> bool:
    """Whether the dataset's elements still raw were read in another encoding than
    ``(implicit, little)``. pydicom reads a whole dataset in one encoding (switching once,
    at its start, when the file lies), so the first raw element tells."""
    tags = ds.keys()  # iterating the dataset itself would convert every element
    for tag in tags:
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement):
            return (elem.is_implicit_VR, elem.is_little_endian) != (implicit, little)
    return False
