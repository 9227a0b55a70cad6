"""Ingesting DICOM instances and erasing subjects.

Ingest order keeps the database honest: parse and validate everything first
(``images/validation.py``: a refused file answers 422 naming the attribute) and compute
every index field, then write the encrypted object (content-addressed, so a retry
rewrites nothing), then index and log in the caller's transaction. Nothing that depends
on the file's content can fail after the object write; a database failure there leaves
only an unreadable, unreferenced blob, never an index row without its object.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.clock import utcnow
from ledger.consent import subjects
from ledger.consent.models import Subject
from ledger.errors import InvalidInput, NotFound
from ledger.images import columns
from ledger.images.models import Image
from ledger.images.store import ObjectStore, data_key, destroy_key, seal
from ledger.images.validation import pixel_length_problem, validate
from ledger.keystore import KeyRing
from ledger.provenance import log
from ledger.provenance.commitments import erase_salt, subject_commitment
from ledger.provenance.merkle import leaf_hash

MAX_UID = 64


@dataclass(frozen=True)
class Ingested:
    image: Image
    duplicate: bool
    subject_created: bool


def image_leaf(sha256_hex: str) -> bytes:
    """The image's leaf in dataset manifests: its content hash, RFC 9162 leaf-hashed."""
    return leaf_hash(b"ledger-image:" + bytes.fromhex(sha256_hex))


def parse(data: bytes) -> Dataset:
    """A DICOM dataset from bytes, or InvalidInput saying what is wrong with them."""
    if len(data) < 132:
        raise InvalidInput("not a DICOM file: too short")
    try:
        ds = dcmread(io.BytesIO(data))
        # Touch every top-level element so a corrupt file fails here, not later.
        for _ in ds:
            pass
    except InvalidDicomError as exc:
        raise InvalidInput("not a DICOM Part 10 file (no DICM prefix)") from exc
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise InvalidInput(f"truncated or corrupt DICOM file ({type(exc).__name__})") from exc
    problem = pixel_length_problem(ds)
    if problem is not None:
        raise InvalidInput(f"{problem} (a truncated DICOM file)")
    validate(ds)
    return ds


def _text(ds: Dataset, keyword: str, limit: int = 64) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value not in (None, "") else ""
    return text[:limit] or None


def _study_date(ds: Dataset) -> date | None:
    text = _text(ds, "StudyDate") or ""
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) >= 8 else None
    except ValueError:
        return None


def _demographics(ds: Dataset) -> subjects.Demographics:
    sex = _text(ds, "PatientSex")
    birth = _text(ds, "PatientBirthDate") or ""
    year = int(birth[:4]) if birth[:4].isdigit() else None
    return subjects.Demographics(sex if sex in ("F", "M", "O") else None, year, None)


def _index_fields(ds: Dataset) -> dict[str, Any]:
    """The image's index entry as the validated file gives it."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.TransferSyntaxUID) if meta and "TransferSyntaxUID" in meta else None
    return {
        "study_uid": _text(ds, "StudyInstanceUID", MAX_UID),
        "series_uid": _text(ds, "SeriesInstanceUID", MAX_UID),
        "sop_uid": _text(ds, "SOPInstanceUID", MAX_UID),
        "sop_class_uid": _text(ds, "SOPClassUID", MAX_UID),
        "transfer_syntax": syntax,
        "modality": (_text(ds, "Modality", 16) or "").upper() or None,
        "body_part": (_text(ds, "BodyPartExamined", 64) or "").upper() or None,
        "study_date": _study_date(ds),
        "manufacturer": _text(ds, "Manufacturer"),
        "burned_in": (_text(ds, "BurnedInAnnotation", 8) or "").upper() or None,
        "rows": int(ds.Rows) if "Rows" in ds else None,
        "columns": int(ds.Columns) if "Columns" in ds else None,
    }


def ingest(
    session: Session,
    store: ObjectStore,
    keys: KeyRing,
    data: bytes,
    *,
    default_issuer: str,
    actor: str | None,
) -> Ingested:
    digest = hashlib.sha256(data).hexdigest()
    existing = session.execute(
        select(Image).where(col(Image.sha256) == digest)
    ).scalar_one_or_none()
    if existing is not None:
        return Ingested(existing, duplicate=True, subject_created=False)
    ds = parse(data)
    issuer = _text(ds, "IssuerOfPatientID", 200) or default_issuer
    demographics = _demographics(ds)
    fields = _index_fields(ds)  # everything the file decides, before anything is written
    subject, created = subjects.get_or_create(
        session, keys.pseudonym_key, issuer, str(ds.PatientID), demographics, actor=actor
    )
    key = data_key(session, keys.master_key, subject.id)
    store.put(digest, seal(key, digest, data))
    image = Image(
        id=str(uuid.uuid4()),
        subject_id=subject.id,
        sha256=digest,
        leaf_hash=image_leaf(digest),
        size_bytes=len(data),
        **fields,
    )
    session.add(image)
    session.flush()
    log.append(
        session,
        "image.ingested",
        {
            "image_id": image.id,
            "subject": subject_commitment(session, subject.id),
            "sha256": digest,
            "modality": image.modality,
        },
        actor=actor,
    )
    return Ingested(image, duplicate=False, subject_created=created)


def get(session: Session, image_id: str) -> Image:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"no image {image_id}")
    return image


def public(image: Image, duplicate: bool = False) -> dict[str, Any]:
    return {
        "id": image.id,
        "subject_id": image.subject_id,
        "sha256": image.sha256,
        "study_instance_uid": image.study_uid,
        "series_instance_uid": image.series_uid,
        "sop_instance_uid": image.sop_uid,
        "sop_class_uid": image.sop_class_uid,
        "transfer_syntax": image.transfer_syntax,
        "modality": image.modality,
        "body_part": image.body_part,
        "study_date": image.study_date.isoformat() if image.study_date else None,
        "manufacturer": image.manufacturer,
        "burned_in_annotation": image.burned_in,
        "rows": image.rows,
        "columns": image.columns,
        "size_bytes": image.size_bytes,
        "created_at": image.created_at,
        "erased": image.erased_at is not None,
        "duplicate": duplicate,
    }


def erase_subject(
    session: Session,
    subject_id: str,
    *,
    actor: str | None,
    vault: columns.Vault | None = None,
) -> list[str]:
    """Right to erasure: shred the data key, strip identifying index fields, unlink the
    pseudonym and forget the commitment salt. The log keeps its entries (and stays
    verifiable) but can no longer be tied to this patient.

    Returns the object addresses to delete once the transaction has committed; they are
    unreadable from the commit on, since their key is gone."""
    subject = session.get(Subject, subject_id)
    if subject is None:
        raise NotFound(f"no subject {subject_id}")
    if subject.erased_at is not None:
        raise InvalidInput("this subject is already erased")
    images = list(
        session.execute(select(Image).where(col(Image.subject_id) == subject_id)).scalars()
    )
    commitment = subject_commitment(session, subject_id)
    log.append(
        session, "subject.erased", {"subject": commitment, "images": len(images)}, actor=actor
    )
    destroy_key(session, subject_id)
    now = utcnow()
    session.execute(
        update(Image)
        .where(col(Image.subject_id) == subject_id)
        .values(
            study_uid=None,
            series_uid=None,
            sop_uid=None,
            study_date=None,
            manufacturer=None,
            erased_at=now,
        )
    )
    columns.erase_subject(session, subject_id, vault)
    subject.pseudonym = secrets.token_bytes(32)  # the patient id no longer finds it
    subject.sex = subject.birth_year = subject.site = None
    subject.erased_at = now
    erase_salt(session, subject_id)
    session.flush()
    return [image.sha256 for image in images]
