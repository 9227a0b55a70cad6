"""Access requests: file and evaluate, review, approve into a signed grant, replay.

Every step is a lifecycle transition (``ledger.access.lifecycle``) and a log entry in the
same transaction. The filer can never approve; how many stewards must approve and whether
a request may be approved at all (e.g. cohort size) are policy decisions, asked of Cedar
with the evaluated counts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from ledger.access import conditions, decision, evaluation, grant_manifest, release, tokens
from ledger.access.lifecycle import Status, transition
from ledger.access.models import AccessRequest, AccessReview, Grant
from ledger.access.request_views import get, reviews
from ledger.access.schemas import (
    AccessRequestCreate,
    ApproveResult,
)
from ledger.clock import timestamp, utcnow
from ledger.config import Settings
from ledger.consent.purposes import Purpose
from ledger.errors import Conflict, Forbidden, InvalidInput, NotFound
from ledger.images.columns import Vault
from ledger.images.models import DatasetRecord
from ledger.keystore import KeyRing
from ledger.policy.engine import PolicySet
from ledger.principals import service as principals
from ledger.provenance import log


@dataclass(frozen=True)
class Context:
    """What the decision path needs beyond the database session."""

    settings: Settings
    keys: KeyRing
    policies: PolicySet
    vault: Vault


def _request_level(
    ctx: Context, purpose: Purpose, eligible: int, excluded: int
) -> tuple[bool, list[str], int, bool]:
    """(approvable, reasons, required approvals, auto-approve) from the approval rules."""
    context = {
        "request": decision.request_context(purpose),
        "eligible_count": eligible,
        "excluded_count": excluded,
    }
    approve, single, auto = ctx.policies.evaluate(
        [
            {"action": a, "resource_type": "AccessRequest", "resource": "r", "context": context}
            for a in ("approve", "single_steward", "auto_approve")
        ]
    )
    reasons = [] if approve.allowed else list(approve.reasons)
    return approve.allowed, reasons, 1 if single.allowed else 2, auto.allowed and approve.allowed


def create(
    session: Session, ctx: Context, body: AccessRequestCreate, *, requester: str
) -> AccessRequest:
    who = principals.requester_facts(session, requester)
    stated = conditions.stored(
        publication=body.publication_commitment,
        return_of_results=body.return_of_results,
        collaborator=body.collaborator,
        no_publication_before=body.no_publication_before,
        project=body.project,
        clinical_care=body.clinical_care,
        genetic_study=body.genetic_study,
    )
    purpose = conditions.with_conditions(
        Purpose.of_fields(
            body.purpose,
            body.duo_category,
            commercial=body.commercial,
            irb_reference=body.irb_reference,
            organisation_type=who.organisation_type,
        ),
        stated,
        region=who.region,
        requester=requester,
        institution=who.institution,
    )
    if len(purpose.code) > 64 or len(purpose.category or "") > 1024:  # the stored columns
        raise InvalidInput("the purpose's codes are too long to store; name shorter codes")
    dataset = session.get(DatasetRecord, body.dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {body.dataset_id}")
    as_of = utcnow()
    result = evaluation.evaluate(
        session,
        ctx.policies,
        dataset.id,
        purpose,
        as_of,
        threshold=ctx.settings.composition_threshold,
        vault=ctx.vault,
    )
    if result.eligible_count == 0:
        raise InvalidInput(
            f"no image of dataset {dataset.name!r} may be used for {purpose}: nothing was filed",
            excluded_by_reason=result.excluded_by_reason,
        )
    approvable, reasons, required, auto = _request_level(
        ctx, purpose, result.eligible_count, result.excluded_count
    )
    sensitive = sorted(set(body.sensitive_research))
    person = conditions.needs_a_person(sensitive, conditions.eligible_modifiers(result.classes))
    if person:  # DUOS "abstain" flags, RS: a steward decides, never a policy
        auto = False
        reasons.extend(person)
    request = AccessRequest(
        id=str(uuid.uuid4()),
        requester_id=requester,
        dataset_id=dataset.id,
        purpose=purpose.code,
        duo_category=purpose.category,
        justification=body.justification,
        irb_reference=body.irb_reference,
        commercial=body.commercial,
        conditions=stated,
        status=transition(Status.submitted, Status.evaluated),
        as_of=as_of,
        policy_hash=ctx.policies.hash,
        consent_snapshot=result.consent_snapshot,
        eligible_count=result.eligible_count,
        excluded_count=result.excluded_count,
        eligible_root=result.eligible_root,
        required_approvals=required,
        auto_approved=False,
        evaluation={
            "excluded_by_reason": result.excluded_by_reason,
            "classes": len(result.classes),
            "cohort_ok": approvable,
            "request_reasons": reasons,
            "composition": result.composition,
            "timings_ms": result.timings_ms,
            "sensitive_research": sensitive,
            "obligations": conditions.obligations(
                purpose, stated, conditions.eligible_modifiers(result.classes)
            ),
        },
        classes=[c.as_json() for c in result.classes],
        outcomes=result.outcomes,
    )
    session.add(request)
    session.flush()
    entry = log.append(
        session,
        "request.evaluated",
        {
            "request_id": request.id,
            "dataset_id": dataset.id,
            "purpose": purpose.text,
            "eligible_count": result.eligible_count,
            "excluded_count": result.excluded_count,
            "eligible_root": result.eligible_root.hex(),
            "policy_hash": ctx.policies.hash,
            "consent_snapshot": result.consent_snapshot,
            "as_of": timestamp(as_of),
        },
        actor=requester,
    )
    if auto:
        request.auto_approved = True
        _approve(session, ctx, request, actor=None, log_index=entry.seq)
    return request


def _review(
    session: Session, request: AccessRequest, steward: str, verdict: str, comment: str
) -> None:
    if steward == request.requester_id:
        raise Forbidden("the principal who filed a request cannot review it")
    if any(r.steward_id == steward for r in reviews(session, request.id)):
        raise Conflict("you have already reviewed this request")
    session.add(
        AccessReview(
            id=str(uuid.uuid4()),
            request_id=request.id,
            steward_id=steward,
            verdict=verdict,
            comment=comment,
        )
    )
    session.flush()


def approve(
    session: Session, ctx: Context, request_id: str, *, steward: str, comment: str
) -> ApproveResult:
    request = get(session, request_id)
    transition(request.status, Status.approved)  # refuses approving a rejected/active request
    if not request.evaluation.get("cohort_ok", False):
        raise Conflict(
            "policy forbids approving this request: "
            + "; ".join(request.evaluation.get("request_reasons") or ["no reason recorded"])
        )
    _review(session, request, steward, "approve", comment)
    approvals = sum(1 for r in reviews(session, request.id) if r.verdict == "approve")
    entry = log.append(
        session,
        "request.approved",
        {
            "request_id": request.id,
            "approvals": approvals,
            "required_approvals": request.required_approvals,
        },
        actor=steward,
    )
    if approvals < request.required_approvals:
        return ApproveResult(
            status=request.status,
            approvals=approvals,
            required_approvals=request.required_approvals,
        )
    grant = _approve(session, ctx, request, actor=steward, log_index=entry.seq)
    return ApproveResult(
        status=request.status,
        grant_id=grant.id,
        grant=grant.token,
        approvals=approvals,
        required_approvals=request.required_approvals,
    )


def _approve(
    session: Session, ctx: Context, request: AccessRequest, *, actor: str | None, log_index: int
) -> Grant:
    request.status = transition(request.status, Status.approved)
    request.decided_at = utcnow()
    grant = issue_grant(session, ctx, request, log_index=log_index, actor=actor)
    request.status = transition(request.status, Status.active)
    session.flush()
    return grant


def issue_grant(
    session: Session, ctx: Context, request: AccessRequest, *, log_index: int, actor: str | None
) -> Grant:
    now = utcnow()
    expires = now + timedelta(days=ctx.settings.grant_days)
    grant_id = str(uuid.uuid4())
    purpose = decision.purpose_of(request).text
    claims = {
        "iss": ctx.settings.issuer,
        "sub": request.requester_id,
        "aud": release.RELEASE_AUDIENCE,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": grant_id,
        "purpose": purpose,
        "manifest_root": bytes(request.eligible_root).hex(),
        "image_count": request.eligible_count,
        "policy_hash": request.policy_hash,
        "as_of": timestamp(request.as_of),
        "log_index": log_index,
    }
    obligations = request.evaluation.get("obligations")
    if obligations:  # PUB, RTN, COL, MOR, IRB: what the holder must do (DUO conditions)
        claims["obligations"] = obligations
    token = tokens.sign(ctx.keys, tokens.GRANT_TYP, claims)
    grant = Grant(
        id=grant_id,
        request_id=request.id,
        pipeline_id=request.requester_id,
        token=token,
        kid=ctx.keys.active.kid,
        manifest_root=request.eligible_root,
        issued_at=now,
        expires_at=expires,
    )
    session.add(grant)
    session.flush()
    grant_manifest.freeze(session, ctx.keys, request, grant_id)
    log.append(
        session,
        "grant.issued",
        {
            "grant_id": grant_id,
            "request_id": request.id,
            "dataset_id": request.dataset_id,
            "manifest_root": claims["manifest_root"],
            "image_count": request.eligible_count,
            "auto_approved": request.auto_approved,
            "kid": grant.kid,
        },
        actor=actor,
    )
    return grant


def reject(session: Session, request_id: str, *, steward: str, comment: str) -> AccessRequest:
    request = get(session, request_id)
    request.status = transition(request.status, Status.rejected)
    _review(session, request, steward, "reject", comment)
    request.decided_at = utcnow()
    log.append(session, "request.rejected", {"request_id": request.id}, actor=steward)
    session.flush()
    return request
