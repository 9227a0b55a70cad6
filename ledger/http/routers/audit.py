"""Auditing queries over HTTP (read-only; auditor and admin roles)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ledger.audit import queries as audit
from ledger.audit.prov_export import prov_json
from ledger.http.deps import SessionDep, StateDep
from ledger.http.security import Auditing

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class EventPublic(BaseModel):
    index: int = Field(description="Log index; prove it with /v1/log/proofs/inclusion.")
    type: str
    time: str
    actor: str | None
    data: dict[str, Any]


class LineagePublic(BaseModel):
    ref: str = Field(description="What the log calls it (subjects by salted commitment).")
    summary: dict[str, int] = Field(description="Entries per category (consent, grant, ...).")
    truncated: bool
    events: list[EventPublic]


def _public(lineage: audit.Lineage) -> LineagePublic:
    return LineagePublic(
        ref=lineage.ref,
        summary=lineage.by_category(),
        truncated=lineage.truncated,
        events=[
            EventPublic(index=e.seq, type=e.type, time=e.time, actor=e.actor, data=e.data)
            for e in lineage.events
        ],
    )


def _add_routes(kind: str, plural: str, what: str) -> None:
    def get_lineage(item_id: str, session: SessionDep, caller: Auditing) -> LineagePublic:
        return _public(audit.lineage(session, kind, item_id))

    def get_prov(
        item_id: str, session: SessionDep, state: StateDep, caller: Auditing
    ) -> dict[str, Any]:
        return prov_json(audit.lineage(session, kind, item_id), state.settings.log_origin)

    get_lineage.__doc__ = f"Every log entry about this {kind}: {what}"
    get_prov.__doc__ = f"The {kind}'s lineage as W3C PROV-JSON."
    router.add_api_route(
        f"/{plural}/{{item_id}}/lineage",
        get_lineage,
        methods=["GET"],
        response_model=LineagePublic,
        name=f"{kind}_lineage",
    )
    router.add_api_route(
        f"/{plural}/{{item_id}}/prov",
        get_prov,
        methods=["GET"],
        name=f"{kind}_prov",
    )


_add_routes("subject", "subjects", "consents, decisions, releases and models.")
_add_routes("grant", "grants", "its request, decision, releases and the models trained under it.")
_add_routes("model", "models", "the grants, requests and datasets behind it.")
_add_routes("dataset", "datasets", "its creation, requests and grants.")


class UnconsentedReleasePublic(BaseModel):
    index: int
    time: str
    type: str
    grant_id: str | None
    purpose: str
    subject: str = Field(description="Subject commitment, as in the log.")
    reasons: list[str]


class ReleaseCheck(BaseModel):
    checked: int = Field(description="(release, subject) pairs checked.")
    violations: list[UnconsentedReleasePublic] = Field(description="Should always be empty.")


@router.get("/releases-after-withdrawal", response_model=ReleaseCheck)
def releases_after_withdrawal(session: SessionDep, caller: Auditing) -> ReleaseCheck:
    """Every release in the log re-checked against consent as known at that moment:
    any subject released without consent in force (e.g. after a withdrawal) is listed."""
    found, checked = audit.releases_without_consent(session)
    return ReleaseCheck(
        checked=checked,
        violations=[UnconsentedReleasePublic(**dataclasses.asdict(v)) for v in found],
    )
