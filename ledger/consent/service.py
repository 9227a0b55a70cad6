"""Recording and querying consent. Every change is a new version row plus a log entry in
the same transaction; nothing is ever updated in place."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.clock import timestamp, utcnow
from ledger.consent import facts, subjects
from ledger.consent.in_force import effective_consents
from ledger.consent.models import ConsentVersion, Subject
from ledger.consent.purposes import Purpose, tree
from ledger.consent.schemas import (
    ConsentAmend,
    ConsentContent,
    ConsentCreate,
    ConsentPublic,
    ConsentState,
    Permission,
    Scope,
    Source,
    SubjectCreate,
    SubjectPublic,
    WithdrawBody,
)
from ledger.consent.terms import terms_key
from ledger.errors import Conflict, InvalidInput, NotFound
from ledger.limits import instant_problem
from ledger.provenance import log
from ledger.provenance.commitments import subject_commitment

CLOCK_SKEW = timedelta(seconds=5)


def subject_public(subject: Subject, created: bool = False) -> SubjectPublic:
    return SubjectPublic(
        id=subject.id,
        sex=subject.sex,
        birth_year=subject.birth_year,
        site=subject.site,
        created_at=subject.created_at,
        created=created,
    )


def create_subject(
    session: Session, key: bytes, body: SubjectCreate, *, actor: str | None
) -> SubjectPublic:
    subject, created = subjects.get_or_create(
        session,
        key,
        body.issuer,
        body.patient_id,
        subjects.Demographics(body.sex, body.birth_year, body.site),
        actor=actor,
    )
    return subject_public(subject, created)


def get_subject(session: Session, subject_id: str) -> Subject:
    subject = session.get(Subject, subject_id)
    if subject is None or subject.erased_at is not None:
        raise NotFound(f"no subject {subject_id}")
    return subject


def public(row: ConsentVersion) -> ConsentPublic:
    return ConsentPublic(
        id=row.consent_id,
        version=row.version,
        subject_id=row.subject_id,
        event=row.event,
        status=row.status,
        decision=row.decision,
        purposes=row.purposes,
        modifiers=row.modifiers,
        scope=Scope.model_validate(row.scope),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        withdrawn_at=row.withdrawn_at,
        recorded_at=row.recorded_at,
        recorded_by=row.recorded_by,
        source=row.source,
        evidence_sha256=row.evidence_sha256,
        reason=row.reason,
    )


def normalise(content: ConsentContent) -> tuple[list[str], list[str]]:
    """Validated, de-duplicated purposes and modifiers (unknown codes are a 422)."""
    purposes, modifiers = _normalise(tuple(content.purposes), tuple(content.modifiers))
    return list(purposes), list(modifiers)


@lru_cache(maxsize=4096)
def _normalise(
    purposes: tuple[str, ...], modifiers: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    t = tree()
    clean = tuple(sorted({t.validate(p.strip()) for p in purposes}))
    return clean, tuple(t.validate_modifiers([m.strip().upper() for m in modifiers]))


def log_data(session: Session, row: ConsentVersion) -> dict[str, Any]:
    return log_data_with(subject_commitment(session, row.subject_id), row.model_dump())


def log_data_with(commitment: str, row: dict[str, Any]) -> dict[str, Any]:
    """What the log says about a consent version: no identifiers, only the commitment."""
    return {
        "subject": commitment,
        "consent_id": row["consent_id"],
        "version": row["version"],
        "status": row["status"],
        "decision": row["decision"],
        "purposes": row["purposes"],
        "modifiers": row["modifiers"],
        "scope": row["scope"],
        "valid_from": timestamp(row["valid_from"]),
        "valid_until": timestamp(row["valid_until"]) if row["valid_until"] else None,
        "evidence_sha256": row["evidence_sha256"],
        "source": row["source"],
    }


def version_values(
    consent_id: str,
    version: int,
    subject_id: str,
    content: ConsentContent,
    *,
    event: str,
    source: Source,
    actor: str | None,
    now: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    """Column values of a new version (bulk paths insert these without ORM objects)."""
    purposes, modifiers = normalise(content)
    scope = content.scope.model_dump(mode="json")
    valid_from = content.valid_from or now
    if content.valid_until is not None and content.valid_until <= valid_from:
        raise InvalidInput("valid_until must be after valid_from")
    return {
        "consent_id": consent_id,
        "version": version,
        "subject_id": subject_id,
        "event": event,
        "status": "active",
        "decision": content.decision.value,
        "purposes": purposes,
        "modifiers": modifiers,
        "scope": scope,
        "terms": terms_key(content.decision.value, purposes, modifiers, scope),
        "valid_from": valid_from,
        "valid_until": content.valid_until,
        "withdrawn_at": None,
        "recorded_at": now,
        "recorded_by": actor,
        "source": source.value,
        "evidence_sha256": content.evidence_sha256,
        "reason": reason,
    }


def record(
    session: Session, body: ConsentCreate, *, actor: str | None, source: Source = Source.api
) -> ConsentVersion:
    get_subject(session, body.subject_id)
    row = ConsentVersion(
        **version_values(
            str(uuid.uuid4()),
            1,
            body.subject_id,
            body,
            event="granted",
            source=source,
            actor=actor,
            now=utcnow(),
        )
    )
    session.add(row)
    session.flush()
    log.append(session, "consent.recorded", log_data(session, row), actor=actor)
    return row


def current(session: Session, consent_id: str) -> ConsentVersion:
    row = session.execute(
        select(ConsentVersion)
        .where(col(ConsentVersion.consent_id) == consent_id)
        .order_by(col(ConsentVersion.version).desc())
        .limit(1)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no consent {consent_id}")
    return row


def history(session: Session, consent_id: str) -> list[ConsentVersion]:
    rows = list(
        session.execute(
            select(ConsentVersion)
            .where(col(ConsentVersion.consent_id) == consent_id)
            .order_by(col(ConsentVersion.version))
        ).scalars()
    )
    if not rows:
        raise NotFound(f"no consent {consent_id}")
    return rows


def amend(
    session: Session,
    consent_id: str,
    body: ConsentAmend,
    *,
    actor: str | None,
    source: Source = Source.api,
) -> ConsentVersion:
    """Correct a consent: a new version with the full new content."""
    previous = current(session, consent_id)
    if previous.status == "withdrawn":
        raise Conflict("this consent was withdrawn; record a new consent instead")
    row = ConsentVersion(
        **version_values(
            consent_id,
            previous.version + 1,
            previous.subject_id,
            body,
            event="amended",
            source=source,
            actor=actor,
            now=utcnow(),
            reason=body.reason,
        )
    )
    session.add(row)
    session.flush()
    log.append(session, "consent.amended", log_data(session, row), actor=actor)
    return row


def withdraw(
    session: Session,
    consent_id: str,
    body: WithdrawBody,
    *,
    actor: str | None,
    subject_id: str | None = None,
) -> ConsentVersion:
    """Withdraw now: effective immediately, for every decision taken from now on."""
    previous = current(session, consent_id)
    if subject_id is not None and previous.subject_id != subject_id:
        raise Conflict("this consent belongs to another subject; nothing was withdrawn")
    if previous.status == "withdrawn":
        raise Conflict("this consent is already withdrawn")
    now = utcnow()
    row = ConsentVersion(
        **{
            **previous.model_dump(),
            "version": previous.version + 1,
            "event": "withdrawn",
            "status": "withdrawn",
            "withdrawn_at": now,
            "recorded_at": now,
            "recorded_by": actor,
            "reason": body.reason,
        }
    )
    session.add(row)
    session.flush()
    log.append(session, "consent.withdrawn", log_data(session, row), actor=actor)
    return row


def check_as_of(as_of: datetime | None) -> datetime:
    """Default now; the future is refused, since later records could change the answer."""
    now = utcnow()
    if as_of is None:
        return now
    if as_of.tzinfo is None:
        raise InvalidInput("as_of needs a time zone, e.g. 2026-01-01T00:00:00Z")
    problem = instant_problem(as_of)
    if problem:
        raise InvalidInput(f"as_of {problem}")
    if as_of > now + CLOCK_SKEW:
        raise InvalidInput("as_of is in the future; consent can only be answered up to now")
    return min(as_of, now)


def state(session: Session, subject_id: str, as_of: datetime | None) -> ConsentState:
    get_subject(session, subject_id)
    when = check_as_of(as_of)
    in_force = effective_consents(session, when, [subject_id]).get(subject_id, [])
    keys = [(f.consent_id, f.version) for f in in_force]
    rows = [session.get(ConsentVersion, key) for key in keys]
    return ConsentState(
        subject_id=subject_id,
        as_of=when,
        consents=[public(r) for r in rows if r is not None],
    )


def permission(
    session: Session, subject_id: str, purpose: str, as_of: datetime | None
) -> Permission:
    get_subject(session, subject_id)
    when = check_as_of(as_of)
    request = Purpose.parse(purpose)
    in_force = effective_consents(session, when, [subject_id]).get(subject_id, [])
    outcome = facts.decide(in_force, request)
    return Permission(
        subject_id=subject_id,
        purpose=request.text,
        as_of=when,
        permitted=outcome.permitted,
        reasons=outcome.reasons,
        scope=[Scope.model_validate(p.scope.as_dict()) for p in outcome.permits],
        modifiers=sorted(outcome.modifiers),
    )


def subject_consents(session: Session, subject_id: str) -> list[ConsentVersion]:
    """Every version of every consent of a subject, oldest first (full history)."""
    get_subject(session, subject_id)
    return list(
        session.execute(
            select(ConsentVersion)
            .where(col(ConsentVersion.subject_id) == subject_id)
            .order_by(col(ConsentVersion.recorded_at), col(ConsentVersion.version))
        ).scalars()
    )


def count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(ConsentVersion)).scalar_one())
