"""API models for access requests, reviews and grants."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from ledger.consent.purposes import purpose_text
from ledger.fields import FreeText, Identifier, Name

SensitiveResearch = Literal[
    "illegal_behaviour",
    "addiction",
    "sexual_diseases",
    "stigmatised_diseases",
    "vulnerable_population",
    "psychological_traits",
    "not_health",
    "population_structure",
    "pediatric",
    "one_sex_only",
]
SENSITIVE_RESEARCH: tuple[str, ...] = get_args(SensitiveResearch)


class AccessRequestCreate(BaseModel):
    """What a pipeline asks for. ``as_of`` is not accepted: a decision is always taken now."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: Identifier = Field(min_length=1, max_length=36)
    purpose: Identifier = Field(
        min_length=1,
        max_length=1024,
        examples=["ai.training", "ai.training,DS:ICD10CM:C34.1,DS:MONDO:0005061"],
        description="An AI purpose, and optionally its DUO research category or the diseases "
        "the research is about (comma-separated).",
    )
    duo_category: Identifier | None = Field(
        default=None,
        max_length=1024,
        description="A DUO research category (HMB), or one or more diseases, comma-separated "
        "(DS:ICD10CM:C34.1,DS:MONDO:0005061): every disease must be covered by a consent and "
        "none refused.",
    )
    justification: FreeText = Field(min_length=10, max_length=10_000)
    irb_reference: Name | None = Field(default=None, max_length=200)
    commercial: bool = Field(default=False, description="Will the result be used commercially?")
    publication_commitment: bool = Field(
        default=False,
        description="The requester commits to publishing its results (what PUB consents "
        "ask); an obligation of the grant.",
    )
    return_of_results: bool = Field(
        default=False,
        description="The requester commits to returning derived data or results to the "
        "source (what RTN consents ask); an obligation of the grant.",
    )
    collaborator: Name | None = Field(
        default=None,
        max_length=200,
        description="The collaborator of the study team the research is done with (what COL "
        "consents ask); an obligation of the grant.",
    )
    project: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$",
        description="The project the research belongs to (a code): consents limited to "
        "projects (PS:<code>) serve only a request naming one they list.",
    )
    clinical_care: bool = Field(
        default=False,
        description="The use is clinical care (DUO CC): an ai.inference request stating it "
        "is covered by consents carrying CC.",
    )
    genetic_study: bool = Field(
        default=False,
        description="The research is a genetic study: consents limited to genetic studies "
        "(GSO) serve only a request stating it.",
    )
    no_publication_before: date | None = Field(
        default=None,
        description="The requester commits to publishing nothing before this day; a consent "
        "with a moratorium (MOR:YYYY-MM-DD) serves only a request committing to its date or "
        "later. An obligation of the grant.",
    )
    sensitive_research: list[SensitiveResearch] = Field(
        default_factory=list,
        max_length=len(SENSITIVE_RESEARCH),
        description="The DUOS 'abstain' questions this research touches (illegal behaviour, "
        "addiction, sexual diseases, stigmatised diseases, vulnerable populations, "
        "psychological traits, non-health research, population structure, pediatric "
        "subjects, one sex only). Any flag is shown in the evaluation and rules out "
        "automatic approval: a steward decides.",
    )


class Evaluation(BaseModel):
    eligible_count: int
    excluded_count: int
    excluded_by_reason: dict[str, int]
    classes: int = Field(description="Equivalence classes the policy engine evaluated")
    eligible_root: str = Field(description="Merkle root (hex) of the eligible manifest")
    required_approvals: int
    auto_approved: bool
    cohort_ok: bool
    request_reasons: list[str]
    composition: dict[str, Any]
    timings_ms: dict[str, float] = Field(default_factory=dict)
    sensitive_research: list[str] = Field(
        default_factory=list,
        description="The request's DUOS 'abstain' flags: a steward must decide (never "
        "approved automatically).",
    )
    obligations: dict[str, Any] = Field(
        default_factory=dict,
        description="What a grant obliges its holder to do, from the conditions the eligible "
        "images' consents ask (publication, return_of_results, collaborator, "
        "no_publication_before, irb_reference); the grant's obligations claim.",
    )


class ReviewPublic(BaseModel):
    steward_id: str
    verdict: str
    comment: str
    created_at: datetime


class AccessRequestPublic(BaseModel):
    id: str
    requester_id: str
    dataset_id: str
    purpose: str
    duo_category: str | None
    justification: str
    irb_reference: str | None
    commercial: bool
    conditions: dict[str, Any] = Field(
        default_factory=dict,
        description="What the request stated: publication, return_of_results, collaborator, "
        "no_publication_before.",
    )
    status: str
    as_of: datetime
    policy_hash: str
    consent_snapshot: str
    evaluation: Evaluation
    reviews: list[ReviewPublic]
    grant_id: str | None
    created_at: datetime
    decided_at: datetime | None

    @property
    def purpose_text(self) -> str:
        """The purpose as one text (``ai.training,HMB``), as grants and the log carry it."""
        return purpose_text(self.purpose, self.duo_category)


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: FreeText = Field(min_length=1, max_length=10_000)


class GrantIssued(BaseModel):
    grant_id: str
    grant: str = Field(description="Compact JWS (typ ledger-grant+jwt); present it as Ledger-Grant")
    request: AccessRequestPublic


class ApproveResult(BaseModel):
    """Approval either issues the grant or records the first of two required approvals."""

    status: str
    grant_id: str | None = None
    grant: str | None = None
    approvals: int
    required_approvals: int


class ImageOutcome(BaseModel):
    image_id: str
    sop_instance_uid: str
    eligible: bool
    policy_ids: list[str]
    reasons: list[str]
    consent_ids: list[str]
