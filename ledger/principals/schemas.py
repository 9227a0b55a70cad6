"""API shapes for principals; unknown fields are refused, not silently dropped."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ledger.fields import Name
from ledger.principals.models import OrganisationType, PrincipalKind, Role


class PrincipalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(
        min_length=1,
        max_length=200,
        description="Unique display name: printable text, no control, bidi or zero-width "
        "characters (they would let one name pose as another).",
    )
    kind: PrincipalKind = Field(default=PrincipalKind.person)
    roles: list[Role] = Field(min_length=1, description="One or more roles.")
    organisation_type: OrganisationType = Field(
        default=OrganisationType.unknown,
        description="The organisation the principal acts for: for_profit, not_for_profit or "
        "unknown. Consents limited to not-for-profit organisations (NPU) serve only "
        "not_for_profit; unknown counts as for-profit.",
    )
    region: str | None = Field(
        default=None,
        max_length=8,
        description="ISO 3166-1 alpha-2 country the principal acts from (e.g. FR). Consents "
        "with a geographical restriction (GS) serve only principals in a region they name; "
        "none is outside every region.",
    )

    institution: str | None = Field(
        default=None,
        max_length=64,
        description="The institution the principal acts for, as a code (e.g. CHU-LYON): "
        "institution-specific consents (IS:<code>) serve only principals of one they list.",
    )

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return _valid_region(value)

    @field_validator("institution")
    @classmethod
    def _institution(cls, value: str | None) -> str | None:
        return _valid_institution(value)

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("name must not be blank")
        return value

    @field_validator("roles")
    @classmethod
    def _unique(cls, value: list[Role]) -> list[Role]:
        return sorted(set(value))


class PrincipalPublic(BaseModel):
    id: str
    name: str
    kind: PrincipalKind
    roles: list[Role]
    organisation_type: OrganisationType = OrganisationType.unknown
    region: str | None = None
    institution: str | None = None
    disabled: bool
    created_at: datetime


class OrganisationTypeSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_type: OrganisationType


class RegionSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(
        max_length=8, description="ISO 3166-1 alpha-2 country (e.g. FR), or null for none."
    )

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return _valid_region(value)


class InstitutionSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution: str | None = Field(
        max_length=64, description="An institution code (e.g. CHU-LYON), or null for none."
    )

    @field_validator("institution")
    @classmethod
    def _institution(cls, value: str | None) -> str | None:
        return _valid_institution(value)


COUNTRY = re.compile(r"^[A-Z]{2}$")
CODE = re.compile(r"^[A-Z0-9][A-Z0-9._\-]{0,63}$")


def _valid_institution(value: str | None) -> str | None:
    """An institution code, upper case (IS consents list such codes); blank is none."""
    if value is None or not value.strip():
        return None
    text = value.strip().upper()
    if not CODE.match(text):
        raise ValueError(
            f"institution {value!r} is not a code (letters, digits, '.', '_', '-'; e.g. CHU-LYON)"
        )
    return text


def _valid_region(value: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 country code, upper case; blank is none."""
    if value is None or not value.strip():
        return None
    text = value.strip().upper()
    if not COUNTRY.match(text):
        raise ValueError(f"region {value!r} is not an ISO 3166-1 alpha-2 country code (e.g. FR)")
    return text


class PrincipalWithKey(PrincipalPublic):
    api_key: str = Field(description="Shown once; only its hash is stored.")
