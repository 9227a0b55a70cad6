"""Authentication and role checks for HTTP routes.

Every protected route declares who may call it with one of the caller types below, each
named for the people it admits, so the route table (and the test that enumerates it)
reads as an access policy. Whether a pipeline may see a particular request or grant is a
domain rule (``ledger.access.visibility``), not a role.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ledger.errors import Forbidden, Unauthenticated
from ledger.http.deps import SessionDep, StateDep
from ledger.principals.keys import Caller, resolve_key
from ledger.principals.models import Role

__all__ = ["Caller", "CallerDep", "RequireRoles", "authenticate", "require_roles"]

# Who oversees everything without owning it: stewards decide, auditors and admins read.
OVERSIGHT = (Role.steward, Role.auditor, Role.admin)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an API key as `Authorization: Bearer <key>`")
    return token.strip()


def _authenticated(request: Request, caller: Caller) -> Caller:
    request.state.caller = caller  # the request log and the console read it
    return caller


def authenticate(request: Request, session: SessionDep) -> Caller:
    return _authenticated(request, resolve_key(session, bearer_token(request)))


CallerDep = Annotated[Caller, Depends(authenticate)]


class RequireRoles:
    """Dependency that admits callers holding any of ``roles``."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(str(r) for r in roles)

    async def __call__(self, caller: CallerDep) -> Caller:
        # async: a set comparison, not worth a hop to the thread pool
        return self.check(caller)

    def check(self, caller: Caller) -> Caller:
        if not caller.roles & self.roles:
            raise Forbidden(f"this action needs one of the roles: {', '.join(sorted(self.roles))}")
        return caller


def authenticate_readonly(request: Request, state: StateDep) -> Caller:
    """Authenticate through the authorizer's key cache, without a session of the
    request's: a hit reads no table; a miss verifies the key in a read-only session of
    its own (on SQLite a POST's session would take the write lock for the request)."""
    return _authenticated(
        request, state.authorizer.authenticate(state.read_sessions, bearer_token(request))
    )


class RequireRolesReadonly(RequireRoles):
    """``RequireRoles`` authenticating with ``authenticate_readonly``: for the authorize
    routes, which write nothing through a request session and are called on every
    inference."""

    async def __call__(self, caller: Annotated[Caller, Depends(authenticate_readonly)]) -> Caller:
        return self.check(caller)


def require_roles(*roles: Role) -> RequireRoles:
    return RequireRoles(*roles)


# Authorize: a pipeline, authenticated through the key cache (decisions are logged in
# batches, in transactions of their own).
ReadonlyPipeline = Annotated[Caller, Depends(RequireRolesReadonly(Role.pipeline))]
Admin = Annotated[Caller, Depends(require_roles(Role.admin))]
Registrar = Annotated[Caller, Depends(require_roles(Role.registrar))]
Curator = Annotated[Caller, Depends(require_roles(Role.curator))]
Steward = Annotated[Caller, Depends(require_roles(Role.steward))]
Pipeline = Annotated[Caller, Depends(require_roles(Role.pipeline))]
# Reads of the log, the audit trail and the principals list.
Auditing = Annotated[Caller, Depends(require_roles(Role.auditor, Role.admin))]
# Reads of access requests under review.
Oversight = Annotated[Caller, Depends(require_roles(*OVERSIGHT))]
# Reads of requests, grants and models: pipelines (their own only) and oversight.
PipelineOrOversight = Annotated[Caller, Depends(require_roles(Role.pipeline, *OVERSIGHT))]
# Reads of consents and of a withdrawal's impact: registrars and oversight.
RegistrarOrOversight = Annotated[Caller, Depends(require_roles(Role.registrar, *OVERSIGHT))]
# Reads of images and datasets: curators and oversight.
CuratorOrOversight = Annotated[Caller, Depends(require_roles(Role.curator, *OVERSIGHT))]
# Erasure of a subject: the registrar who holds the consent, or an admin.
Erasure = Annotated[Caller, Depends(require_roles(Role.admin, Role.registrar))]
