"""Where FHIR resources are kept: sealed under the subject's data key, one per version of
the consent, beside keyed hashes that find them (same content, business identifier).

The consent domain cannot reach the subjects' data keys (they belong to the image store,
a layer above); the caller hands in a ``Sealer`` that can (``images.subject_seal``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.consent.fhir_export import address, identifier_digest
from ledger.consent.models import FhirConsent, FhirConsentVersion, FhirIdentifier, Subject


class Sealer(Protocol):
    def seal(self, session: Session, subject_id: str, address: str, plaintext: bytes) -> bytes: ...

    def unseal(self, session: Session, subject_id: str, address: str, blob: bytes) -> bytes: ...


@dataclass(frozen=True)
class Keys:
    """What FHIR storage needs: the pseudonym key (keyed hashes) and the sealer."""

    pseudonym_key: bytes
    sealer: Sealer


@dataclass(frozen=True)
class Kept:
    resource: dict[str, Any]
    fhir_version: str
    digest: str
    date: tuple[datetime | None, datetime | None]


def keep(
    session: Session,
    keys: Keys,
    *,
    consent_id: str,
    subject_id: str,
    version: int,
    parts: list[str],
    fhir_version: str,
    resource: dict[str, Any],
    digest: str,
    date: tuple[datetime | None, datetime | None],
    identifiers: list[tuple[str, str]],
) -> None:
    if session.get(FhirConsent, consent_id) is None:
        session.add(FhirConsent(consent_id=consent_id, subject_id=subject_id, parts=parts))
        session.flush()
    plaintext = json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode()
    session.add(
        FhirConsentVersion(
            consent_id=consent_id,
            version=version,
            fhir_version=fhir_version,
            sealed=keys.sealer.seal(session, subject_id, address(consent_id, version), plaintext),
            digest=digest,
            date_start=date[0],
            date_end=date[1],
        )
    )
    for system, value in identifiers:
        key = identifier_digest(keys.pseudonym_key, system, value)
        if session.get(FhirIdentifier, key) is None:
            session.add(FhirIdentifier(digest=key, consent_id=consent_id))
    session.flush()


def kept(
    session: Session, keys: Keys, consent_id: str, subject_id: str, version: int
) -> Kept | None:
    """The resource kept for exactly this version of the consent, unsealed."""
    row = session.get(FhirConsentVersion, (consent_id, version))
    if row is None:
        return None
    plaintext = keys.sealer.unseal(
        session, subject_id, address(consent_id, version), bytes(row.sealed)
    )
    return Kept(json.loads(plaintext), row.fhir_version, row.digest, (row.date_start, row.date_end))


def by_identifier(session: Session, key: bytes, system: str, value: str) -> str | None:
    """The consent this business identifier names, unless its subject was erased."""
    found = session.execute(
        select(col(FhirIdentifier.consent_id))
        .join(FhirConsent, col(FhirConsent.consent_id) == col(FhirIdentifier.consent_id))
        .join(Subject, col(Subject.id) == col(FhirConsent.subject_id))
        .where(col(FhirIdentifier.digest) == identifier_digest(key, system, value))
        .where(col(Subject.erased_at).is_(None))
    ).scalar_one_or_none()
    return str(found) if found is not None else None


def by_digest(session: Session, subject_id: str, digest: str) -> list[tuple[str, int]]:
    """(consent id, version) of the kept resources of this subject with this digest."""
    rows = session.execute(
        select(col(FhirConsentVersion.consent_id), col(FhirConsentVersion.version))
        .join(FhirConsent, col(FhirConsent.consent_id) == col(FhirConsentVersion.consent_id))
        .where(col(FhirConsent.subject_id) == subject_id)
        .where(col(FhirConsentVersion.digest) == digest)
    ).all()
    return [(str(c), int(v)) for c, v in rows]


def exception_parts(session: Session, subject_id: str) -> set[str]:
    """Consent ids that are nested exceptions of a FHIR consent (not resources of their own)."""
    rows = session.execute(
        select(col(FhirConsent.parts)).where(col(FhirConsent.subject_id) == subject_id)
    ).scalars()
    return {part for parts in rows for part in parts[1:]}
