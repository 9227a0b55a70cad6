"""Every protected route answers 401 without a key and 403 to a role it does not admit.

Routes are enumerated from the app, so a new route without a role check fails here.
"""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from ledger.http.app import routers
from ledger.http.security import RequireRoles
from ledger.principals.models import Role
from tests.conftest import MakePrincipal, auth

# Routes anyone may GET: health, public keys, docs, checkpoints and proofs.
PUBLIC = re.compile(
    r"^(/healthz|/\.well-known/.*|/docs.*|/redoc|/openapi\.json|/v1/purposes"
    r"|/v1/log/checkpoint|/v1/log/proofs/.*)$"
)
# Routes any authenticated principal may call.
ANY_ROLE = {"/v1/principals/me"}


def _roles(dependant: Dependant) -> set[str] | None:
    found: set[str] | None = None
    for dep in dependant.dependencies:
        if isinstance(dep.call, RequireRoles):
            found = (found or set()) | set(dep.call.roles)
        inner = _roles(dep)
        if inner is not None:
            found = (found or set()) | inner
    return found


def _routes(app: FastAPI) -> list[tuple[str, str, set[str] | None]]:
    """API routes; the console's pages check roles on their own (tests/web)."""
    out = []
    candidates = [r for router in routers() for r in router.routes] + list(app.routes)
    for route in candidates:
        if isinstance(route, APIRoute) and not route.path.startswith("/console"):
            for method in route.methods:
                out.append((method, route.path, _roles(route.dependant)))
    return out


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)


def test_every_route_is_public_or_role_checked(app: FastAPI) -> None:
    for method, path, roles in _routes(app):
        if (method == "GET" and PUBLIC.match(path)) or path in ANY_ROLE:
            continue
        assert roles, f"{method} {path} has no role check"


def test_protected_routes_refuse_missing_and_wrong_keys(
    app: FastAPI, client: TestClient, make_principal: MakePrincipal
) -> None:
    keys = {role: make_principal(role) for role in Role}
    checked = 0
    for method, path, roles in _routes(app):
        if method == "GET" and PUBLIC.match(path):
            continue
        url = _fill(path)
        r = client.request(method, url, json={})
        assert r.status_code == 401, f"{method} {path} without key gave {r.status_code}"
        assert r.headers["content-type"].startswith("application/problem+json")
        r = client.request(method, url, json={}, headers=auth("ldg_0000000000000000_forged"))
        assert r.status_code == 401, f"{method} {path} with a forged key gave {r.status_code}"
        if roles is None:
            continue
        for role in Role:
            if role.value in roles:
                continue
            r = client.request(method, url, json={}, headers=auth(keys[role]))
            assert r.status_code == 403, f"{method} {path} as {role} gave {r.status_code}"
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("header", ["", "Basic abc", "Bearer", "Bearer    "])
def test_malformed_authorization_header(client: TestClient, header: str) -> None:
    r = client.get("/v1/principals", headers={"Authorization": header} if header else {})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
