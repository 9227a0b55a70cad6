"""Synthetic DICOM for tests: real files written by pydicom, with PHI planted in every
attribute class of the Annex E table, in nested sequences and in private tags."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ledger.images.synthetic import set_pixels

PLANTED_DATE = "19710203"
PLANTED_TIME = "235958"


def planted_text(tag: int) -> str:
    return f"PHI{tag:08X}Q"


def _value(tag: int, vr: str) -> object | None:
    if vr in ("LO", "SH", "LT", "ST", "UT", "UC", "PN", "UR"):
        return planted_text(tag)
    if vr in ("CS", "AE"):
        return planted_text(tag)[:16]
    if vr == "DA":
        return PLANTED_DATE
    if vr == "TM":
        return PLANTED_TIME
    if vr == "DT":
        return PLANTED_DATE + PLANTED_TIME
    if vr == "UI":
        return f"1.2.826.0.1.3680043.9.7777.{tag}"
    if vr == "AS":
        return "051Y"
    return None


def annex_e_tags() -> list[tuple[int, str]]:
    rows = json.loads(
        resources.files("ledger.images")
        .joinpath("data/confidentiality_profile_attributes.json")
        .read_text()
    )
    out = []
    for row in rows:
        if len(row["id"]) != 8 or "x" in row["id"]:
            continue
        tag = int(row["id"], 16)
        if tag >> 16 in (0x0000, 0x0002):
            continue  # command and file-meta groups are not dataset attributes
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        out.append((tag, vr.split(" or ")[0]))
    return out


def ct_dataset(
    patient_id: str = "MRN-0001",
    *,
    plant_everything: bool = False,
    rows: int = 64,
    seed: int = 0,
    study_uid: str | None = None,
    modality: str = "CT",
    body_part: str = "CHEST",
    burned_in: str | None = "NO",
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    if plant_everything:
        for tag, vr in annex_e_tags():
            value = _value(tag, vr)
            if value is not None:
                ds.add_new(tag, vr, value)
        nested = Dataset()
        nested.PatientName = "NESTED^PHI^NAME"
        nested.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.9.7777.424242"
        nested.PhysiciansOfRecord = "DEEPER^PHI"
        ds.ReferencedStudySequence = Sequence([nested])
        inner = Dataset()
        inner.ReferencedPatientSequence = Sequence([nested])  # two levels down
        ds.ReferencedImageSequence = Sequence([inner])
        ds.add_new(0x00091010, "LO", "ACME PHI CREATOR")
        ds.add_new(0x00091001, "LO", "PRIVATE-PHI-VALUE")
        ds.add_new(0x60003000, "OW", b"OVERLAYPHI" * 4)
        ds.add_new(0x60000010, "US", 8)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = "DOE^JANE"
    ds.PatientBirthDate = "19500101"
    ds.PatientSex = "F"
    ds.StudyDate = "20240315"
    ds.StudyTime = "101500"
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.Manufacturer = "ACME"
    ds.StudyDescription = "CT CHEST DOE JANE"
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    set_pixels(ds, rows, seed)
    return ds


def write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
