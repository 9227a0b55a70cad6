"""Principals over HTTP: keys shown once and hashed at rest, disable, rotate, paginate."""

from __future__ import annotations

import hashlib
import json

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from ledger.principals.models import ApiKey, Role
from ledger.provenance.models import LogEntry
from tests.conftest import MakePrincipal, auth


def test_create_returns_key_once_and_stores_only_its_hash(
    client: TestClient, make_principal: MakePrincipal, engine: Engine
) -> None:
    admin = make_principal(Role.admin)
    r = client.post(
        "/v1/principals",
        json={"name": "scanner-ai", "kind": "pipeline", "roles": ["pipeline"]},
        headers=auth(admin),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    key = body["api_key"]
    assert body["roles"] == ["pipeline"]
    with engine.connect() as conn:
        stored = [bytes(row[0]) for row in conn.execute(select(ApiKey.key_hash))]  # type: ignore[call-overload]
    assert hashlib.sha256(key.encode()).digest() in stored
    assert all(key.encode() not in h for h in stored)
    me = client.get("/v1/principals/me", headers=auth(key)).json()
    assert me["name"] == "scanner-ai"
    assert "api_key" not in client.get(f"/v1/principals/{me['id']}", headers=auth(admin)).json()


def test_creation_is_logged_without_the_key(
    client: TestClient, make_principal: MakePrincipal, engine: Engine
) -> None:
    admin = make_principal(Role.admin)
    r = client.post(
        "/v1/principals", json={"name": "reg", "roles": ["registrar"]}, headers=auth(admin)
    )
    key = r.json()["api_key"]
    with engine.connect() as conn:
        entries = [json.loads(bytes(e)) for (e,) in conn.execute(select(LogEntry.entry))]  # type: ignore[call-overload]
    created = [e for e in entries if e["type"] == "principal.created"]
    assert created[-1]["data"]["principal"] == r.json()["id"]
    assert all(key not in json.dumps(e) for e in entries)


def test_duplicate_name_is_conflict(client: TestClient, make_principal: MakePrincipal) -> None:
    admin = make_principal(Role.admin)
    body = {"name": "dup", "roles": ["auditor"]}
    assert client.post("/v1/principals", json=body, headers=auth(admin)).status_code == 201
    r = client.post("/v1/principals", json=body, headers=auth(admin))
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")


def test_disable_revokes_keys(client: TestClient, make_principal: MakePrincipal) -> None:
    admin = make_principal(Role.admin)
    created = client.post(
        "/v1/principals", json={"name": "temp", "roles": ["auditor"]}, headers=auth(admin)
    ).json()
    assert client.get("/v1/principals/me", headers=auth(created["api_key"])).status_code == 200
    r = client.post(f"/v1/principals/{created['id']}/disable", headers=auth(admin))
    assert r.status_code == 200
    assert r.json()["disabled"] is True
    assert client.get("/v1/principals/me", headers=auth(created["api_key"])).status_code == 401
    again = client.post(f"/v1/principals/{created['id']}/disable", headers=auth(admin))
    assert again.status_code == 409


def test_last_admin_cannot_be_disabled(client: TestClient, make_principal: MakePrincipal) -> None:
    admin = make_principal(Role.admin)
    me = client.get("/v1/principals/me", headers=auth(admin)).json()
    r = client.post(f"/v1/principals/{me['id']}/disable", headers=auth(admin))
    assert r.status_code == 409
    assert "last active admin" in r.json()["detail"]


def test_rotate_key_revokes_the_old_one(client: TestClient, make_principal: MakePrincipal) -> None:
    admin = make_principal(Role.admin)
    old = make_principal(Role.pipeline)
    me = client.get("/v1/principals/me", headers=auth(old)).json()
    r = client.post(f"/v1/principals/{me['id']}/keys", headers=auth(admin))
    assert r.status_code == 201
    new = r.json()["api_key"]
    assert client.get("/v1/principals/me", headers=auth(old)).status_code == 401
    assert client.get("/v1/principals/me", headers=auth(new)).status_code == 200


def test_unknown_principal_is_404(client: TestClient, make_principal: MakePrincipal) -> None:
    admin = make_principal(Role.admin)
    r = client.post("/v1/principals/nope/disable", headers=auth(admin))
    assert r.status_code == 404


def test_list_is_cursor_paginated(client: TestClient, make_principal: MakePrincipal) -> None:
    admin = make_principal(Role.admin)
    for i in range(5):
        make_principal(Role.auditor, name=f"aud{i}")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/principals", params=params, headers=auth(admin)).json()
        seen.extend(p["id"] for p in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6
    assert len(set(seen)) == 6
    assert seen == sorted(seen)
    bad = client.get("/v1/principals", params={"cursor": "!!!"}, headers=auth(admin))
    assert bad.status_code == 422
