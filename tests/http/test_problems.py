"""Bad input at the HTTP edge: always problem+json, never a 500, never a write."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from ledger.config import Settings
from ledger.errors import SchemaNotCurrent
from ledger.principals.models import Principal, Role
from ledger.provenance.models import LogEntry
from ledger.server import create_app
from tests.conftest import MakePrincipal, auth

PROBLEM = "application/problem+json"


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        p = conn.execute(select(func.count()).select_from(Principal)).scalar_one()
        e = conn.execute(select(func.count()).select_from(LogEntry)).scalar_one()
    return p, e


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["database"] is True


def test_malformed_json_is_problem(
    client: TestClient, make_principal: MakePrincipal, engine: Engine
) -> None:
    key = make_principal(Role.admin)
    before = _counts(engine)
    r = client.post(
        "/v1/principals",
        content=b'{"name": "x", "roles": [',
        headers={**auth(key), "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["status"] == 422
    assert _counts(engine) == before


def test_unknown_field_and_unknown_role_are_refused(
    client: TestClient, make_principal: MakePrincipal, engine: Engine
) -> None:
    key = make_principal(Role.admin)
    before = _counts(engine)
    r = client.post(
        "/v1/principals", json={"name": "x", "roles": ["admin"], "colour": "red"}, headers=auth(key)
    )
    assert r.status_code == 422
    assert any(e["loc"][-1] == "colour" for e in r.json()["errors"])
    r = client.post("/v1/principals", json={"name": "x", "roles": ["wizard"]}, headers=auth(key))
    assert r.status_code == 422
    assert "input" not in r.json()["errors"][0], "validation errors must not echo input"
    assert _counts(engine) == before


def test_oversized_body_is_413(settings: Settings, make_principal: MakePrincipal) -> None:
    small = settings.model_copy(update={"max_json_bytes": 1000})
    key = make_principal(Role.admin)
    with TestClient(create_app(small)) as c:
        r = c.post(
            "/v1/principals",
            json={"name": "x" * 2000, "roles": ["admin"]},
            headers=auth(key),
        )
    assert r.status_code == 413
    assert r.headers["content-type"].startswith(PROBLEM)


def test_oversized_chunked_body_is_413(settings: Settings, make_principal: MakePrincipal) -> None:
    small = settings.model_copy(update={"max_json_bytes": 1000})
    key = make_principal(Role.admin)

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "'
        for _ in range(50):
            yield b"x" * 100
        yield b'", "roles": ["admin"]}'

    with TestClient(create_app(small)) as c:
        r = c.post(
            "/v1/principals",
            content=chunks(),
            headers={**auth(key), "Content-Type": "application/json"},
        )
    assert r.status_code == 413


def test_unknown_route_is_problem(client: TestClient) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith(PROBLEM)


def test_unmigrated_database_names_the_fix(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    blank = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'blank.db'}"})
    with pytest.raises(SchemaNotCurrent, match="ledger db upgrade"):
        create_app(blank)


def test_openapi_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/principals" in spec["paths"]
    assert spec["info"]["description"]
