"""Issue 23 on the console: what a request states (PUB, RTN, COL, MOR, project) and the
obligations its grant carries are shown on the request page and on the grants page."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ledger.config import Settings
from ledger.principals.models import Role
from tests.access.test_access_api import ISSUER, _file, _population
from tests.conftest import MakePrincipal, auth
from tests.web.test_console import sign_in


@pytest.fixture
def conditional(engine: Engine, settings: Settings) -> dict[str, str]:
    rows = [f"{ISSUER},A{i:03d},permit,ai,PUB;MOR:2027-06-30\n" for i in range(25)]
    rows += [f"{ISSUER},B{i:03d},permit,ai,COL\n" for i in range(5)]
    return _population(engine, settings, rows)


def test_conditions_and_obligations_are_shown(
    client: TestClient, conditional: dict[str, str], make_principal: MakePrincipal
) -> None:
    pipeline, steward = make_principal(Role.pipeline), make_principal(Role.steward)
    r = _file(
        client,
        pipeline,
        conditional["all"],
        "ai.training",
        publication_commitment=True,
        no_publication_before="2027-07-01",
        project="LUNG-1",
    )
    assert r.status_code == 201, r.text
    request = r.json()
    assert request["evaluation"]["obligations"] == {
        "publication": True,
        "no_publication_before": "2027-07-01",
    }
    assert request["evaluation"]["excluded_by_reason"] == {"col-needs-a-named-collaborator": 5}
    approved = client.post(
        f"/v1/access-requests/{request['id']}/approve",
        json={"comment": "ok"},
        headers=auth(steward),
    )
    assert approved.status_code == 200, approved.text
    sign_in(client, steward)
    page = client.get(f"/console/requests/{request['id']}")
    assert page.status_code == 200
    assert "Obligations of the grant" in page.text
    assert "no publication before" in page.text
    assert "2027-07-01" in page.text
    assert "LUNG-1" in page.text
    assert "col-needs-a-named-collaborator" in page.text
    grants = client.get("/console/grants")
    assert "publication; no publication before: 2027-07-01" in grants.text
