"""Recording which policy set is in force: a change of set is itself a logged event."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.config import Settings
from ledger.policy.engine import PolicySet, default_directory, load
from ledger.provenance import log
from ledger.provenance.models import LogEntry

EVENT = "policy.activated"


def configured(settings: Settings) -> PolicySet:
    """The policy set this installation uses: ``LEDGER_POLICY_DIR`` or the packaged one."""
    return load(settings.policy_dir or default_directory())


def active_hash(session: Session) -> str | None:
    raw = session.execute(
        select(col(LogEntry.entry))
        .where(col(LogEntry.event_type) == EVENT)
        .order_by(col(LogEntry.seq).desc())
        .limit(1)
    ).scalar_one_or_none()
    return None if raw is None else str(json.loads(bytes(raw))["data"]["policy_hash"])


def activate(session: Session, policies: PolicySet, *, actor: str | None) -> bool:
    """Log the set if it differs from the last one logged; returns whether it did."""
    if active_hash(session) == policies.hash:
        return False
    log.append(
        session,
        EVENT,
        {
            "policy_hash": policies.hash,
            "files": list(policies.files),
            "policies": sorted(r.id for r in policies.rules.values()),
        },
        actor=actor,
    )
    return True
