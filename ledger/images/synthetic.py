"""Synthetic DICOM instances for the demo and benchmarks, made with pydicom (no
downloads): plausible headers, random pixels, fake patients only."""

from __future__ import annotations

import io
import random
from datetime import date

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
}
BODY_PARTS = {
    "CT": ["CHEST", "ABDOMEN", "HEAD"],
    "MR": ["HEAD", "KNEE", "SPINE"],
    "CR": ["CHEST"],
    "DX": ["CHEST", "HAND"],
}
MANUFACTURERS = ["ACME Medical", "Globex Imaging", "Initech Radiology"]


def instance(
    *,
    patient_id: str,
    issuer: str,
    modality: str,
    body_part: str,
    study_date: date,
    study_uid: str,
    series_uid: str,
    number: int,
    rng: random.Random,
    size: int = 64,
) -> bytes:
    """One Part 10 file as bytes. What belongs to the patient (sex, birth date), the study
    (time, accession number) and the series (manufacturer) is drawn from them, so the
    instances of a study agree on it as a real study's do; ``rng`` draws the pixels."""
    person = random.Random(f"patient|{issuer}|{patient_id}")
    visit = random.Random(f"study|{study_uid}")
    equipment = random.Random(f"series|{series_uid}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(SOP_CLASSES[modality])
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = issuer
    ds.PatientName = f"SYNTHETIC^{patient_id}"
    ds.PatientSex = person.choice("FM")
    ds.PatientBirthDate = f"{person.randint(1935, 2005)}0101"
    ds.StudyDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = f"{visit.randint(7, 19):02d}{visit.randint(0, 59):02d}00"
    ds.AccessionNumber = f"ACC{visit.randint(0, 10**8):08d}"
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.Manufacturer = equipment.choice(MANUFACTURERS)
    ds.InstitutionName = "Synthetic General Hospital"
    ds.StudyDescription = f"{modality} {body_part}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.BurnedInAnnotation = "NO"
    set_pixels(ds, size, rng.randint(0, 2**31))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def set_pixels(ds: Dataset, size: int, seed: int) -> None:
    """A 12-bit monochrome image of random noise, ``size`` pixels square."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    pixels = np.random.default_rng(seed).integers(0, 4096, (size, size))
    ds.PixelData = pixels.astype(np.uint16).tobytes()


def patient_studies(
    patient_id: str, issuer: str, rng: random.Random, *, studies: int, per_series: int
) -> list[bytes]:
    """A few studies of one patient, each a series of ``per_series`` instances."""
    out = []
    for _ in range(studies):
        modality = rng.choice(list(SOP_CLASSES))
        part = rng.choice(BODY_PARTS[modality])
        day = date(2019, 1, 1).fromordinal(date(2019, 1, 1).toordinal() + rng.randint(0, 2000))
        study, series = generate_uid(), generate_uid()
        for n in range(per_series):
            out.append(
                instance(
                    patient_id=patient_id,
                    issuer=issuer,
                    modality=modality,
                    body_part=part,
                    study_date=day,
                    study_uid=study,
                    series_uid=series,
                    number=n + 1,
                    rng=rng,
                )
            )
    return out
