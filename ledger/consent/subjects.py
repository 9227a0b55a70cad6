"""Subjects by pseudonym: the same patient always maps to the same subject, whether it is
first seen by a registrar or in a DICOM header."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger import dialect
from ledger.clock import utcnow
from ledger.consent.models import Subject
from ledger.db import bulk_insert
from ledger.dbtypes import table_of
from ledger.errors import InvalidInput
from ledger.provenance import log
from ledger.provenance.commitments import commitments_for, subject_commitment


def pseudonym(key: bytes, issuer: str, patient_id: str) -> bytes:
    """HMAC-SHA256(pseudonym key, issuer | patient id)."""
    issuer, patient_id = issuer.strip(), patient_id.strip()
    if not issuer or not patient_id:
        raise InvalidInput("issuer and patient_id must not be empty")
    if "|" in issuer:
        raise InvalidInput("issuer must not contain '|'")
    return hmac.new(key, f"{issuer}|{patient_id}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Demographics:
    sex: str | None = None
    birth_year: int | None = None
    site: str | None = None


def find(session: Session, key: bytes, issuer: str, patient_id: str) -> Subject | None:
    digest = pseudonym(key, issuer, patient_id)
    return session.execute(
        select(Subject).where(col(Subject.pseudonym) == digest)
    ).scalar_one_or_none()


def get_or_create(
    session: Session,
    key: bytes,
    issuer: str,
    patient_id: str,
    demographics: Demographics = Demographics(),
    *,
    actor: str | None,
) -> tuple[Subject, bool]:
    """Return (subject, created). Safe against two callers creating the same patient at once:
    the insert is ``ON CONFLICT DO NOTHING`` on the unique pseudonym."""
    digest = pseudonym(key, issuer, patient_id)
    existing = session.execute(
        select(Subject).where(col(Subject.pseudonym) == digest)
    ).scalar_one_or_none()
    if existing is not None:
        _fill_missing(existing, demographics)
        return existing, False
    new_id = str(uuid.uuid4())
    session.execute(
        dialect.insert_ignoring_conflicts(session, Subject, ["pseudonym"]).values(
            id=new_id,
            pseudonym=digest,
            sex=demographics.sex,
            birth_year=demographics.birth_year,
            site=demographics.site,
            created_at=utcnow(),
        )
    )
    subject = session.execute(select(Subject).where(col(Subject.pseudonym) == digest)).scalar_one()
    created = subject.id == new_id
    if created:
        log.append(
            session,
            "subject.created",
            {"subject": subject_commitment(session, subject.id)},
            actor=actor,
        )
    return subject, created


def _fill_missing(subject: Subject, demographics: Demographics) -> None:
    """Demographics learnt later (e.g. from an image) fill gaps but never overwrite."""
    if subject.sex is None and demographics.sex is not None:
        subject.sex = demographics.sex
    if subject.birth_year is None and demographics.birth_year is not None:
        subject.birth_year = demographics.birth_year
    if subject.site is None and demographics.site is not None:
        subject.site = demographics.site


LOG_BATCH = 1_000


@dataclass(frozen=True)
class PatientRef:
    issuer: str
    patient_id: str
    demographics: Demographics = Demographics()


def get_or_create_many(
    session: Session,
    key: bytes,
    patients: list[PatientRef],
    *,
    actor: str | None,
    chunk: int = 5_000,
) -> tuple[list[str], int, dict[str, str]]:
    """Subject ids for many patients (in order), how many were new, and every subject's
    log commitment: a few bulk statements instead of a round trip per patient."""
    digests = [pseudonym(key, p.issuer, p.patient_id) for p in patients]
    known: dict[bytes, str] = {}
    unique = list(dict.fromkeys(digests))
    for i in range(0, len(unique), chunk):
        rows = session.execute(
            select(col(Subject.pseudonym), col(Subject.id)).where(
                col(Subject.pseudonym).in_(unique[i : i + chunk])
            )
        )
        known.update((bytes(d), sid) for d, sid in rows)
    now = utcnow()
    new_rows: list[dict[str, object]] = []
    for digest, patient in zip(digests, patients, strict=True):
        if digest in known:
            continue
        known[digest] = str(uuid.uuid4())
        d = patient.demographics
        new_rows.append(
            {
                "id": known[digest],
                "pseudonym": digest,
                "sex": d.sex,
                "birth_year": d.birth_year,
                "site": d.site,
                "created_at": now,
            }
        )
    for i in range(0, len(new_rows), chunk):
        bulk_insert(session, table_of(Subject), new_rows[i : i + chunk])
    ids = [known[d] for d in digests]
    commitments = commitments_for(session, ids)
    if new_rows:
        created = [str(r["id"]) for r in new_rows]
        # One entry per batch, naming every new subject by commitment: a bulk import of
        # 100k patients adds 100 entries here, not 100k.
        log.append_many(
            session,
            [
                (
                    "subjects.created",
                    {"subjects": [commitments[c] for c in part], "count": len(part)},
                )
                for part in (created[i : i + LOG_BATCH] for i in range(0, len(created), LOG_BATCH))
            ],
            actor=actor,
        )
    return ids, len(new_rows), commitments
