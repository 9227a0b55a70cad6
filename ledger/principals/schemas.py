"""API shapes for principals; unknown fields are refused, not silently dropped."""

from __future__ import annotations

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
    disabled: bool
    created_at: datetime


class OrganisationTypeSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation_type: OrganisationType


class PrincipalWithKey(PrincipalPublic):
    api_key: str = Field(description="Shown once; only its hash is stored.")
