"""Shapes of the consent API. Validation that needs the purpose tree happens in the service,
so the CLI, CSV and FHIR paths share it."""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ledger.consent.decisions import Decision as Decision
from ledger.fields import FreeText, Identifier, Instant, Name

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MODALITY = re.compile(r"^[A-Z0-9]{1,16}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(StrEnum):
    api = "api"
    csv = "csv"
    fhir = "fhir"


class SubjectLookup(Strict):
    issuer: Identifier = Field(min_length=1, max_length=200, description="Assigning authority.")
    patient_id: Identifier = Field(min_length=1, max_length=200, description="Stored only as HMAC.")


class SubjectCreate(SubjectLookup):
    """A patient and their coarse demographics: the one validator of the JSON API, the CSV
    import (``csv_import``) and FHIR."""

    sex: str | None = Field(default=None, pattern="^(F|M|O|U)$")
    birth_year: int | None = Field(default=None, ge=1870, le=2200)
    site: Name | None = Field(default=None, max_length=100)


class SubjectPublic(BaseModel):
    id: str
    sex: str | None
    birth_year: int | None
    site: str | None
    created_at: datetime
    created: bool = Field(default=False, description="True when this call created it.")


class StudyDateRange(Strict):
    """An optional range of study dates (consent scopes, dataset filters)."""

    study_date_from: date | None = None
    study_date_to: date | None = None

    @model_validator(mode="after")
    def _dates(self) -> StudyDateRange:
        if (
            self.study_date_from
            and self.study_date_to
            and self.study_date_to < self.study_date_from
        ):
            raise ValueError("study_date_to is before study_date_from")
        return self


class Scope(StudyDateRange):
    """Which images a consent is about; empty lists and null dates mean no limit."""

    modalities: list[str] = Field(default_factory=list, description="DICOM Modality codes.")
    body_parts: list[str] = Field(default_factory=list, description="DICOM BodyPartExamined.")

    @field_validator("modalities", "body_parts")
    @classmethod
    def _upper(cls, values: list[str]) -> list[str]:
        out = sorted({v.strip().upper() for v in values if v.strip()})
        if any(not MODALITY.match(v.replace("_", "")) for v in out):
            raise ValueError("codes are letters and digits, e.g. CT, MR, CHEST, HEAD_NECK")
        return out


class ConsentContent(Strict):
    """What a consent says; shared by new consents and corrections."""

    decision: Decision
    purposes: list[str] = Field(min_length=1, max_length=32)
    scope: Scope = Field(default_factory=Scope)
    modifiers: list[str] = Field(default_factory=list, max_length=16)
    valid_from: Instant | None = Field(default=None, description="Default: now.")
    valid_until: Instant | None = None
    evidence_sha256: str | None = Field(default=None, description="SHA-256 of the signed form.")

    @field_validator("evidence_sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is not None and not SHA256.match(value.lower()):
            raise ValueError("evidence_sha256 must be 64 hex digits")
        return value.lower() if value else None

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-01-01T00:00:00Z")
        return value

    @model_validator(mode="after")
    def _period(self) -> ConsentContent:
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class ConsentCreate(ConsentContent):
    subject_id: Identifier = Field(min_length=1, max_length=36)


class ConsentAmend(ConsentContent):
    """A correction: the whole new content; the old version stays in history."""

    reason: FreeText = Field(min_length=1, max_length=500, description="Why it was corrected.")


class WithdrawBody(Strict):
    reason: FreeText | None = Field(default=None, max_length=500)


class ConsentPublic(BaseModel):
    id: str
    version: int
    subject_id: str
    event: str
    status: str
    decision: Decision
    purposes: list[str]
    modifiers: list[str]
    scope: Scope
    valid_from: datetime
    valid_until: datetime | None
    withdrawn_at: datetime | None
    recorded_at: datetime
    recorded_by: str | None
    source: Source
    evidence_sha256: str | None
    reason: str | None


class ConsentState(BaseModel):
    subject_id: str
    as_of: datetime
    consents: list[ConsentPublic] = Field(description="Consents in force at as_of.")


class Permission(BaseModel):
    subject_id: str
    purpose: str
    as_of: datetime
    permitted: bool
    reasons: list[str]
    scope: list[Scope] = Field(description="Images the permission is limited to (any of).")
    modifiers: list[str] = Field(description="Conditions attached by the covering permits.")


class ImportReport(BaseModel):
    imported: int
    subjects_created: int
    errors: list[dict[str, Any]] = Field(default_factory=list)
