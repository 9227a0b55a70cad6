"""Issue 23 regressions through the whole decision path (SQLite and PostgreSQL): a refusal
of an ancestor disease is not stepped around by naming a narrower one, NMDS limits model
development to a named disease, and NPU is decided by the requester's organisation."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ledger.config import Settings
from ledger.policy.engine import default_directory
from ledger.principals.models import Role
from ledger.server import create_app
from tests.access.test_access_api import ISSUER, _file, _population, _rows
from tests.conftest import MakePrincipal, auth


@pytest.fixture
def world(engine: Engine, settings: Settings) -> dict[str, str]:
    rows = [f"{ISSUER},A{i:03d},permit,ai,\n" for i in range(25)]
    rows += [f"{ISSUER},N{i:03d},permit,ai,NPU\n" for i in range(10)]
    rows += [f"{ISSUER},M{i:03d},permit,ai.development;HMB,NMDS\n" for i in range(10)]
    rows += [f"{ISSUER},R{i:03d},permit,ai;HMB,\n" for i in range(5)]
    rows += [f"{ISSUER},R{i:03d},deny,DS:c34,\n" for i in range(5)]
    return _population(engine, settings, rows)


def _evaluation(r: Any) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    return dict(r.json()["evaluation"])


def test_refusal_nmds_and_npu_by_organisation(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    pipeline, admin = make_principal(Role.pipeline), make_principal(Role.admin)
    me = client.get("/v1/principals/me", headers=auth(pipeline)).json()
    assert me["organisation_type"] == "unknown"

    # Unknown organisation (counts as for-profit), a non-commercial request naming HMB.
    e = _evaluation(_file(client, pipeline, world["all"], "ai.training,HMB"))
    assert e["excluded_by_reason"]["npu-needs-a-not-for-profit-requester"] == 10
    assert e["excluded_by_reason"]["nmds-development-needs-a-disease"] == 10
    assert e["excluded_by_reason"]["consent-denies-purpose"] == 5  # HMB overlaps DS:C34
    assert e["eligible_count"] == 25

    # The refusal of C34 is not stepped around by naming C34.1 (or writing it otherwise).
    for purpose in ("ai.training,DS:C34.1", "ai.training,DS:ICD10CM:C34.12", "ai.training,DS:c341"):
        e = _evaluation(_file(client, pipeline, world["all"], purpose))
        assert e["excluded_by_reason"]["consent-denies-purpose"] == 5, purpose
    other = _evaluation(_file(client, pipeline, world["all"], "ai.training,DS:C50"))
    assert "consent-denies-purpose" not in other["excluded_by_reason"]
    assert "nmds-development-needs-a-disease" not in other["excluded_by_reason"]

    # An unknown disease code system is refused before anything is filed.
    bad = _file(client, pipeline, world["all"], "ai.training,DS:SNOMED:363358000")
    assert bad.status_code == 422

    # Marked not-for-profit by an admin: NPU consents serve it.
    set_type = client.put(
        f"/v1/principals/{me['id']}/organisation-type",
        json={"organisation_type": "not_for_profit"},
        headers=auth(admin),
    )
    assert set_type.status_code == 200, set_type.text
    assert set_type.json()["organisation_type"] == "not_for_profit"
    refused = client.put(
        f"/v1/principals/{me['id']}/organisation-type",
        json={"organisation_type": "charity"},
        headers=auth(admin),
    )
    assert refused.status_code == 422
    e = _evaluation(_file(client, pipeline, world["all"], "ai.training,DS:C50"))
    assert "npu-needs-a-not-for-profit-requester" not in e["excluded_by_reason"]
    assert e["eligible_count"] == 25 + 10 + 10 + 5
    # ... but still not for commercial use.
    e = _evaluation(_file(client, pipeline, world["all"], "ai.training,DS:C50", commercial=True))
    assert e["excluded_by_reason"]["commercial-use-needs-no-npu"] == 10


def test_sensitive_research_needs_a_person(
    engine: Engine, settings: Settings, make_principal: MakePrincipal, tmp_path: Path
) -> None:
    """A DUOS 'abstain' flag rules out automatic approval and says so in the evaluation."""
    world = _population(engine, settings, _rows(permit=110))
    policies = tmp_path / "policies"
    shutil.copytree(default_directory(), policies)
    shutil.copy(policies / "optional" / "auto_approve_validation.cedar", policies)
    app = create_app(settings.model_copy(update={"policy_dir": policies}))
    pipeline = make_principal(Role.pipeline)
    with TestClient(app) as client:
        plain = _file(client, pipeline, world["all"], "ai.validation").json()
        assert plain["status"] == "active"
        flagged = _file(
            client,
            pipeline,
            world["all"],
            "ai.validation",
            sensitive_research=["addiction", "pediatric", "addiction"],
        ).json()
        assert flagged["status"] == "evaluated"
        e = flagged["evaluation"]
        assert e["auto_approved"] is False
        assert e["sensitive_research"] == ["addiction", "pediatric"]
        assert any("sensitive research" in r for r in e["request_reasons"])
        assert e["cohort_ok"] is True  # a steward may still approve it
        bad = _file(client, pipeline, world["all"], "ai.validation", sensitive_research=["x"])
        assert bad.status_code == 422
