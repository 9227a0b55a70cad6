"""Who is authorizing: what the pipeline's principal records reaches the decision (NPU, GS,
IS and US consents),
and the key cache the authorize routes authenticate through never outlives a change to a
key or a principal, in this process or another one on the same database (SQLite and
PostgreSQL)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ledger.client import LedgerClient
from ledger.config import Settings
from ledger.principals.models import Role
from ledger.server import create_app
from tests.access.test_access_api import ISSUER, _population
from tests.access.test_release import _study_of, _subject_of
from tests.conftest import MakePrincipal, auth

NPU_REASON = "npu-needs-a-not-for-profit-requester"


def _world(engine: Engine, settings: Settings) -> None:
    rows = [f"{ISSUER},A{i:03d},permit,ai,\n" for i in range(3)]
    rows += [f"{ISSUER},N{i:03d},permit,ai,NPU\n" for i in range(3)]
    _population(engine, settings, rows)


def _authorize(client: TestClient, key: str, study: str, **extra: object) -> dict[str, Any]:
    r = client.post(
        "/v1/authorize",
        headers=auth(key),
        json={"purpose": "ai.inference", "study_instance_uid": study} | extra,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _set_type(client: TestClient, admin: str, key: str, kind: str) -> None:
    me = client.get("/v1/principals/me", headers=auth(key)).json()
    r = client.put(
        f"/v1/principals/{me['id']}/organisation-type",
        json={"organisation_type": kind},
        headers=auth(admin),
    )
    assert r.status_code == 200, r.text


def test_npu_consents_serve_inference_by_a_not_for_profit_pipeline_only(
    client: TestClient, engine: Engine, settings: Settings, make_principal: MakePrincipal
) -> None:
    _world(engine, settings)
    admin, registrar = make_principal(Role.admin), make_principal(Role.registrar)
    npu = _study_of(engine, _subject_of(client, registrar, "N001"))
    plain = _study_of(engine, _subject_of(client, registrar, "A001"))
    unknown, profit, charity = (make_principal(Role.pipeline) for _ in range(3))
    _set_type(client, admin, profit, "for_profit")

    for key in (unknown, profit, charity):
        assert _authorize(client, key, plain)["decision"] == "permit"
        denied = _authorize(client, key, npu)
        assert denied["decision"] == "deny"
        assert denied["policy_ids"] == [NPU_REASON]
    # Once the pipeline is recorded as not-for-profit, its next call is permitted (the
    # cached key and the cached decision were both for "unknown"); the others are not.
    _set_type(client, admin, charity, "not_for_profit")
    assert _authorize(client, charity, npu)["decision"] == "permit"
    assert _authorize(client, unknown, npu)["decision"] == "deny"
    assert _authorize(client, profit, npu)["decision"] == "deny"
    # ... but never for commercial use.
    assert _authorize(client, charity, npu, commercial=True)["decision"] == "deny"
    batch = client.post(
        "/v1/authorize/batch",
        headers=auth(charity),
        json={"purpose": "ai.inference", "study_instance_uids": [npu, plain]},
    ).json()["decisions"]
    assert [d["decision"] for d in batch] == ["permit", "permit"]
    batch = client.post(
        "/v1/authorize/batch",
        headers=auth(profit),
        json={"purpose": "ai.inference", "study_instance_uids": [npu, plain]},
    ).json()["decisions"]
    assert [d["decision"] for d in batch] == ["deny", "permit"]


def test_a_rotated_key_or_disabled_pipeline_is_refused_at_once_by_every_server(
    client: TestClient, engine: Engine, settings: Settings, make_principal: MakePrincipal
) -> None:
    _world(engine, settings)
    admin, registrar = make_principal(Role.admin), make_principal(Role.registrar)
    study = _study_of(engine, _subject_of(client, registrar, "A002"))
    key = make_principal(Role.pipeline)
    me = client.get("/v1/principals/me", headers=auth(key)).json()
    # A second server on the same database (another worker or host): its own key cache.
    with TestClient(create_app(settings), raise_server_exceptions=False) as other:
        for server in (client, other):
            assert _authorize(server, key, study)["decision"] == "permit"  # now cached
        wrong = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
        refused = client.post(
            "/v1/authorize",
            headers=auth(wrong),
            json={"purpose": "ai.inference", "study_instance_uid": study},
        )
        assert refused.status_code == 401  # same key id, other secret: not a cache hit

        rotated = client.post(f"/v1/principals/{me['id']}/keys", headers=auth(admin))
        assert rotated.status_code == 201, rotated.text
        new_key = rotated.json()["api_key"]
        for server in (other, client):
            r = server.post(
                "/v1/authorize",
                headers=auth(key),
                json={"purpose": "ai.inference", "study_instance_uid": study},
            )
            assert r.status_code == 401, r.text
            assert _authorize(server, new_key, study)["decision"] == "permit"

        disabled = client.post(f"/v1/principals/{me['id']}/disable", headers=auth(admin))
        assert disabled.status_code == 200, disabled.text
        for server in (other, client):
            r = server.post(
                "/v1/authorize/batch",
                headers=auth(new_key),
                json={"purpose": "ai.inference", "study_instance_uids": [study]},
            )
            assert r.status_code == 401, r.text


def test_inference_weighs_the_pipelines_region_institution_identity_and_clinical_care(
    client: TestClient, engine: Engine, settings: Settings, make_principal: MakePrincipal
) -> None:
    """GS, IS, US and CC consents decide an authorize call as they decide an access
    request: by what the pipeline's principal records (changed by an admin, seen at the
    next call) and by the call's ``clinical_care``."""
    admin, registrar = make_principal(Role.admin), make_principal(Role.registrar)
    listed, other = make_principal(Role.pipeline), make_principal(Role.pipeline)
    me = client.get("/v1/principals/me", headers=auth(listed)).json()
    rows = [
        f"{ISSUER},G001,permit,ai,GS:EU\n",
        f"{ISSUER},I001,permit,ai,IS:CHU-LYON\n",
        f"{ISSUER},U001,permit,ai,US:{me['id']}\n",
        f"{ISSUER},K001,permit,HMB,CC\n",
    ]
    _population(engine, settings, rows)
    study = {
        p: _study_of(engine, _subject_of(client, registrar, p))
        for p in ("G001", "I001", "U001", "K001")
    }

    def verdicts(key: str, purpose: str = "ai.inference", **extra: object) -> list[object]:
        return [
            _authorize(client, key, study[p], purpose=purpose, **extra)["decision"]
            for p in ("G001", "I001", "U001")
        ]

    assert verdicts(listed) == ["deny", "deny", "permit"]  # no region, no institution
    assert verdicts(other) == ["deny", "deny", "deny"]
    base = f"/v1/principals/{me['id']}"
    assert client.put(f"{base}/region", json={"region": "fr"}, headers=auth(admin)).is_success
    assert client.put(
        f"{base}/institution", json={"institution": "chu-lyon"}, headers=auth(admin)
    ).is_success
    assert verdicts(listed) == ["permit", "permit", "permit"]
    assert client.put(f"{base}/region", json={"region": "US"}, headers=auth(admin)).is_success
    assert verdicts(listed) == ["deny", "permit", "permit"]

    care = _authorize(client, other, study["K001"], purpose="ai.inference,HMB")
    assert care["decision"] == "deny"
    care = _authorize(client, other, study["K001"], purpose="ai.inference,HMB", clinical_care=True)
    assert care["decision"] == "permit"
    # The SDK states it too, one study or many.
    sdk = LedgerClient(str(client.base_url), other, http=client)
    assert sdk.authorize("ai.inference,HMB", study["K001"])["decision"] == "deny"
    many = sdk.authorize_many("ai.inference,HMB", [study["K001"]] * 2, clinical_care=True)
    assert [d["decision"] for d in many] == ["permit", "permit"]
