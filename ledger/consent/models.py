"""Subject table. A subject is known only by a keyed pseudonym of issuer and patient id;
the identifier itself is never stored (no direct identifier at rest in clear)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, String
from sqlmodel import Field, SQLModel

from ledger.clock import utcnow
from ledger.dbtypes import JSONType, UTCDateTime


class Subject(SQLModel, table=True):
    __tablename__ = "subjects"

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    pseudonym: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False, unique=True))
    sex: str | None = Field(default=None, sa_column=Column(String(16)))
    birth_year: int | None = Field(default=None, sa_column=Column(Integer))
    site: str | None = Field(default=None, sa_column=Column(String(100), index=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False)
    )
    erased_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class ConsentVersion(SQLModel, table=True):
    """One version of one consent; the table is only ever appended to.

    Each row is the consent's whole state as recorded at ``recorded_at`` (transaction
    time), valid from ``valid_from`` to ``valid_until`` (valid time), cut short at
    ``withdrawn_at`` if withdrawn. The state "as of T" is, per consent, the highest version
    recorded at or before T: answers about the past never change when history grows.
    """

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_subject_recorded", "subject_id", "recorded_at"),)

    consent_id: str = Field(sa_column=Column(String(36), primary_key=True))
    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    subject_id: str = Field(sa_column=Column(String(36), ForeignKey("subjects.id"), nullable=False))
    event: str = Field(sa_column=Column(String(16), nullable=False))  # granted|amended|withdrawn
    status: str = Field(sa_column=Column(String(16), nullable=False))  # active|withdrawn
    decision: str = Field(sa_column=Column(String(8), nullable=False))  # permit|deny
    purposes: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    modifiers: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    scope: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    terms: str = Field(sa_column=Column(String(64), nullable=False))  # ledger.consent.terms
    valid_from: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    valid_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    withdrawn_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    recorded_by: str | None = Field(default=None, sa_column=Column(String(36)))
    source: str = Field(sa_column=Column(String(16), nullable=False))  # api|csv|fhir
    evidence_sha256: str | None = Field(default=None, sa_column=Column(String(64)))
    reason: str | None = Field(default=None, sa_column=Column(String(500)))


class FhirConsent(SQLModel, table=True):
    """A consent that came in (or was last updated) as FHIR: which consents it made.

    The resource itself is in ``fhir_consent_versions``, sealed under the subject's data key;
    nothing here names the patient (architecture: no direct identifier at rest in clear)."""

    __tablename__ = "fhir_consents"

    consent_id: str = Field(sa_column=Column(String(36), primary_key=True))
    subject_id: str = Field(
        sa_column=Column(String(36), ForeignKey("subjects.id"), nullable=False, index=True)
    )
    parts: list[str] = Field(
        sa_column=Column(JSONType, nullable=False),
        description="Consent ids made from it: the root first, then nested exceptions.",
    )


class FhirConsentVersion(SQLModel, table=True):
    """The FHIR resource as received for one version of the root consent, sealed (AES-GCM
    under the subject's data key: erasure shreds it with the images). ``digest`` is a keyed
    hash of its pseudonymised content (re-posting the same resource finds it); ``date_*``
    bound the consent's own date (``dateTime``/``date``) for search."""

    __tablename__ = "fhir_consent_versions"

    consent_id: str = Field(
        sa_column=Column(String(36), ForeignKey("fhir_consents.consent_id"), primary_key=True)
    )
    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    fhir_version: str = Field(sa_column=Column(String(8), nullable=False))
    sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    digest: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    date_start: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    date_end: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class FhirIdentifier(SQLModel, table=True):
    """A Consent's business identifier, as a keyed hash of ``system|value``: conditional
    create (``If-None-Exist: identifier=...``) and search find the consent by it."""

    __tablename__ = "fhir_identifiers"

    digest: str = Field(sa_column=Column(String(64), primary_key=True))
    consent_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("fhir_consents.consent_id"), nullable=False, index=True
        )
    )
