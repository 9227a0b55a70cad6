"""Revoking grants, and what withdrawals and erasures take away from grants already issued.

Release re-checks consent on every call, so a withdrawal blocks release at once without any
bookkeeping here. What pipelines also need is to *learn* about it, to delete local copies:
``changes`` derives, for a window of time, the revoked grants and the manifest instances
whose subject's consent changed (a new version, a withdrawal, a validity end) or who was
erased, and which are no longer eligible under current consent and policy. Deriving it
from the consent history instead of keeping a queue means it cannot drift from the truth.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.access import decision
from ledger.access.lifecycle import Status, transition
from ledger.access.models import AccessRequest, Grant, GrantImage
from ledger.clock import utcnow
from ledger.consent.models import ConsentVersion, Subject
from ledger.errors import Conflict, NotFound
from ledger.images.models import Image
from ledger.policy.engine import PolicySet
from ledger.provenance import log


def revoke(session: Session, grant_id: str, *, reason: str, actor: str | None) -> Grant:
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise NotFound(f"no grant {grant_id}")
    if grant.revoked_at is not None:
        raise Conflict("this grant is already revoked")
    request = session.get(AccessRequest, grant.request_id)
    assert request is not None
    request.status = transition(request.status, Status.revoked)
    grant.revoked_at = utcnow()
    grant.revoke_reason = reason
    session.flush()
    log.append(
        session,
        "grant.revoked",
        {"grant_id": grant.id, "request_id": request.id, "reason": reason},
        actor=actor,
    )
    return grant


def changed_subjects(session: Session, since: datetime, until: datetime) -> set[str]:
    """Subjects whose consent could have changed in (since, until]: a version recorded,
    a validity that ended, or an erasure."""
    cv = ConsentVersion
    changed = set(
        session.execute(
            select(col(cv.subject_id))
            .where(
                or_(
                    and_(col(cv.recorded_at) > since, col(cv.recorded_at) <= until),
                    and_(col(cv.valid_until) > since, col(cv.valid_until) <= until),
                )
            )
            .distinct()
        ).scalars()
    )
    changed.update(
        session.execute(
            select(col(Subject.id)).where(
                col(Subject.erased_at) > since, col(Subject.erased_at) <= until
            )
        ).scalars()
    )
    return changed


@dataclass(frozen=True)
class Lost:
    grant_id: str
    pipeline_id: str
    deid_uid: str
    image_id: str
    subject_id: str
    policy_ids: list[str]


def lost_instances(
    session: Session,
    policies: PolicySet,
    subjects: set[str],
    *,
    pipeline_id: str | None = None,
    grant_ids: list[str] | None = None,
    now: datetime | None = None,
) -> list[Lost]:
    """Manifest instances of unrevoked grants, belonging to ``subjects``, that are not
    eligible now."""
    if not subjects:
        return []
    ids = sorted(subjects)
    found: dict[str, list[Any]] = defaultdict(list)
    for i in range(0, len(ids), 1000):
        query = (
            select(
                col(GrantImage.grant_id),
                col(Grant.pipeline_id),
                col(GrantImage.deid_uid),
                col(GrantImage.image_id),
                col(Image.subject_id),
            )
            .join(Image, col(Image.id) == col(GrantImage.image_id))
            .join(Grant, col(Grant.id) == col(GrantImage.grant_id))
            .where(col(Image.subject_id).in_(ids[i : i + 1000]), col(Grant.revoked_at).is_(None))
        )
        if pipeline_id is not None:
            query = query.where(col(Grant.pipeline_id) == pipeline_id)
        if grant_ids is not None:
            query = query.where(col(GrantImage.grant_id).in_(grant_ids))
        for row in session.execute(query):
            found[row.grant_id].append(row)
    moment = now or utcnow()
    lost: list[Lost] = []
    for grant_id, items in sorted(found.items()):
        grant = session.get(Grant, grant_id)
        assert grant is not None
        request = session.get(AccessRequest, grant.request_id)
        assert request is not None
        purpose = decision.purpose_of(request)
        classes = decision.recheck(session, policies, purpose, [r.image_id for r in items], moment)
        for r, cls in zip(items, classes, strict=True):
            if not cls.eligible:
                lost.append(
                    Lost(
                        grant_id,
                        r.pipeline_id,
                        r.deid_uid,
                        r.image_id,
                        r.subject_id,
                        list(cls.policy_ids),
                    )
                )
    return lost


def changes(
    session: Session,
    policies: PolicySet,
    since: datetime,
    *,
    pipeline_id: str | None,
) -> dict[str, Any]:
    """Revoked grants and no-longer-usable instances in (since, now]; poll again with
    ``since`` set to the returned ``until``."""
    until = utcnow()
    query = select(Grant).where(col(Grant.revoked_at) > since, col(Grant.revoked_at) <= until)
    if pipeline_id is not None:
        query = query.where(col(Grant.pipeline_id) == pipeline_id)
    revoked = [
        {"grant_id": g.id, "revoked_at": g.revoked_at, "reason": g.revoke_reason}
        for g in session.execute(query.order_by(col(Grant.revoked_at))).scalars()
    ]
    lost = lost_instances(
        session,
        policies,
        changed_subjects(session, since, until),
        pipeline_id=pipeline_id,
        now=until,
    )
    by_grant: dict[str, list[Lost]] = defaultdict(list)
    for item in lost:
        by_grant[item.grant_id].append(item)
    return {
        "since": since,
        "until": until,
        "grants": revoked,
        "instances": [
            {
                "grant_id": grant_id,
                "sop_instance_uids": sorted(i.deid_uid for i in items),
                "policy_ids": sorted({p for i in items for p in i.policy_ids}),
            }
            for grant_id, items in sorted(by_grant.items())
        ],
    }
