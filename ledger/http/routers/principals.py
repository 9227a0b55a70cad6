"""HTTP routes for principals: parse, check the role, call one service function."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ledger.http.deps import SessionDep
from ledger.http.security import Admin, Auditing, CallerDep
from ledger.pagination import Page
from ledger.principals import service
from ledger.principals.schemas import (
    InstitutionSet,
    OrganisationTypeSet,
    PrincipalCreate,
    PrincipalPublic,
    PrincipalWithKey,
    RegionSet,
)

router = APIRouter(prefix="/v1/principals", tags=["principals"])


@router.post("", status_code=201, response_model=PrincipalWithKey)
def create_principal(body: PrincipalCreate, session: SessionDep, caller: Admin) -> PrincipalWithKey:
    """Create a person or pipeline; the API key is in this response and nowhere else."""
    return service.create(session, body, actor=caller.id)


@router.get("", response_model=Page[PrincipalPublic])
def list_principals(
    session: SessionDep,
    caller: Auditing,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[PrincipalPublic]:
    """All principals, oldest identifier first, one page at a time."""
    rows, next_cursor = service.list_page(session, cursor, limit)
    return Page(items=[service.public(p) for p in rows], next_cursor=next_cursor)


@router.get("/me", response_model=PrincipalPublic)
def whoami(session: SessionDep, caller: CallerDep) -> PrincipalPublic:
    """The principal the presented key belongs to (any role)."""
    return service.public(service.get(session, caller.id))


@router.get("/{principal_id}", response_model=PrincipalPublic)
def get_principal(principal_id: str, session: SessionDep, caller: Auditing) -> PrincipalPublic:
    return service.public(service.get(session, principal_id))


@router.post("/{principal_id}/disable", response_model=PrincipalPublic)
def disable_principal(principal_id: str, session: SessionDep, caller: Admin) -> PrincipalPublic:
    """Disable a principal and revoke its keys at once; it stays in history."""
    return service.public(service.disable(session, principal_id, actor=caller.id))


@router.post("/{principal_id}/keys", status_code=201, response_model=PrincipalWithKey)
def rotate_principal_key(principal_id: str, session: SessionDep, caller: Admin) -> PrincipalWithKey:
    """Revoke the principal's keys and issue a new one, shown once."""
    return service.rotate_key(session, principal_id, actor=caller.id)


@router.put("/{principal_id}/organisation-type", response_model=PrincipalPublic)
def set_organisation_type(
    principal_id: str, body: OrganisationTypeSet, session: SessionDep, caller: Admin
) -> PrincipalPublic:
    """Record the organisation the principal acts for (for_profit, not_for_profit, unknown):
    consents limited to not-for-profit organisations (NPU) serve only not_for_profit."""
    return service.public(
        service.set_organisation_type(
            session, principal_id, body.organisation_type, actor=caller.id
        )
    )


@router.put("/{principal_id}/region", response_model=PrincipalPublic)
def set_region(
    principal_id: str, body: RegionSet, session: SessionDep, caller: Admin
) -> PrincipalPublic:
    """Record the country the principal acts from (ISO 3166-1 alpha-2, or null): consents
    with a geographical restriction (GS) serve only principals in a region they name."""
    return service.public(service.set_region(session, principal_id, body.region, actor=caller.id))


@router.put("/{principal_id}/institution", response_model=PrincipalPublic)
def set_institution(
    principal_id: str, body: InstitutionSet, session: SessionDep, caller: Admin
) -> PrincipalPublic:
    """Record the institution the principal acts for (a code, or null): consents limited to
    institutions (IS) serve only principals of one they list."""
    return service.public(
        service.set_institution(session, principal_id, body.institution, actor=caller.id)
    )
