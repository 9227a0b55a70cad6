"""Principal lifecycle. Services never commit: the caller's unit of work does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.clock import utcnow
from ledger.errors import Conflict, InvalidInput, NotFound
from ledger.pagination import paginate
from ledger.principals.keys import new_api_key
from ledger.principals.models import ApiKey, OrganisationType, Principal, Role
from ledger.principals.schemas import PrincipalCreate, PrincipalPublic, PrincipalWithKey
from ledger.provenance import log


def public(principal: Principal) -> PrincipalPublic:
    return PrincipalPublic.model_validate(principal, from_attributes=True)


def _issue_key(session: Session, principal_id: str) -> str:
    key_id, key, digest = new_api_key()
    session.add(ApiKey(id=key_id, principal_id=principal_id, key_hash=digest))
    return key


def create(session: Session, data: PrincipalCreate, *, actor: str | None) -> PrincipalWithKey:
    if session.execute(select(col(Principal.id)).where(col(Principal.name) == data.name)).first():
        raise Conflict(f"a principal named {data.name!r} already exists")
    principal = Principal(
        id=str(uuid.uuid4()),
        name=data.name,
        kind=data.kind,
        roles=[str(r) for r in data.roles],
        organisation_type=str(data.organisation_type),
        region=data.region,
        institution=data.institution,
    )
    session.add(principal)
    session.flush()
    key = _issue_key(session, principal.id)
    session.flush()
    log.append(
        session,
        "principal.created",
        {
            "principal": principal.id,
            "kind": principal.kind,
            "roles": principal.roles,
            "organisation_type": principal.organisation_type,
            "region": principal.region,
            "institution": principal.institution,
        },
        actor=actor,
    )
    return PrincipalWithKey(**public(principal).model_dump(), api_key=key)


def get(session: Session, principal_id: str) -> Principal:
    principal = session.get(Principal, principal_id)
    if principal is None:
        raise NotFound(f"no principal {principal_id}")
    return principal


def find_by_name(session: Session, name: str) -> Principal:
    principal = session.execute(
        select(Principal).where(col(Principal.name) == name)
    ).scalar_one_or_none()
    if principal is None:
        raise NotFound(f"no principal named {name!r}")
    return principal


def list_page(
    session: Session, cursor: str | None = None, limit: int = 100
) -> tuple[Sequence[Principal], str | None]:
    return paginate(session, select(Principal), col(Principal.id), cursor, limit)


def _active_admins(session: Session) -> list[str]:
    rows = session.execute(select(Principal).where(col(Principal.disabled).is_(False))).scalars()
    return [p.id for p in rows if Role.admin in p.roles]


def disable(session: Session, principal_id: str, *, actor: str | None) -> Principal:
    principal = get(session, principal_id)
    if principal.disabled:
        raise Conflict(f"principal {principal_id} is already disabled")
    if Role.admin in principal.roles and _active_admins(session) == [principal.id]:
        raise Conflict("refusing to disable the last active admin")
    principal.disabled = True
    session.execute(
        update(ApiKey)
        .where(col(ApiKey.principal_id) == principal.id, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    session.flush()
    log.append(session, "principal.disabled", {"principal": principal.id}, actor=actor)
    return principal


def _record(
    session: Session, principal_id: str, field: str, value: str | None, actor: str | None
) -> Principal:
    """Set one of the facts the decision path weighs about a principal, logged as
    ``principal.<field>_set`` (which moves the credentials mark: cached callers and
    decisions see the change at their next call)."""
    principal = get(session, principal_id)
    setattr(principal, field, value)
    session.flush()
    log.append(
        session,
        f"principal.{field}_set",
        {"principal": principal.id, field: getattr(principal, field)},
        actor=actor,
    )
    return principal


def set_organisation_type(
    session: Session, principal_id: str, organisation_type: OrganisationType, *, actor: str | None
) -> Principal:
    """Record the kind of organisation a principal acts for (what NPU consents weigh)."""
    return _record(session, principal_id, "organisation_type", str(organisation_type), actor)


def set_region(
    session: Session, principal_id: str, region: str | None, *, actor: str | None
) -> Principal:
    """Record the country a principal acts from (what GS consents weigh); ``region`` is
    validated by ``schemas.RegionSet``."""
    return _record(session, principal_id, "region", region, actor)


def set_institution(
    session: Session, principal_id: str, institution: str | None, *, actor: str | None
) -> Principal:
    """Record the institution a principal acts for (what IS consents list); validated by
    ``schemas.InstitutionSet``."""
    return _record(session, principal_id, "institution", institution, actor)


@dataclass(frozen=True)
class RequesterFacts:
    """What the decision path weighs about a requester (NPU, GS, IS)."""

    organisation_type: str = "unknown"
    region: str | None = None
    institution: str | None = None


def requester_facts(session: Session, principal_id: str) -> RequesterFacts:
    """A principal's organisation type, region and institution; unknown and none for one
    not found."""
    principal = session.get(Principal, principal_id)
    if principal is None:
        return RequesterFacts()
    return RequesterFacts(principal.organisation_type, principal.region, principal.institution)


def organisation_type(session: Session, principal_id: str) -> str:
    """A principal's organisation type; ``unknown`` for one not found."""
    principal = session.get(Principal, principal_id)
    return principal.organisation_type if principal is not None else "unknown"


def rotate_key(session: Session, principal_id: str, *, actor: str | None) -> PrincipalWithKey:
    """Revoke every key of the principal and issue one new key."""
    principal = get(session, principal_id)
    if principal.disabled:
        raise Conflict(f"principal {principal_id} is disabled; it cannot get a key")
    session.execute(
        update(ApiKey)
        .where(col(ApiKey.principal_id) == principal.id, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    key = _issue_key(session, principal.id)
    session.flush()
    log.append(session, "principal.key_rotated", {"principal": principal.id}, actor=actor)
    return PrincipalWithKey(**public(principal).model_dump(), api_key=key)


def validate_roles(roles: Sequence[str]) -> list[Role]:
    try:
        return [Role(r) for r in roles]
    except ValueError as exc:
        raise InvalidInput(f"unknown role; choose from {', '.join(r.value for r in Role)}") from exc
