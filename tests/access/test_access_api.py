"""The decision path over HTTP: file, evaluate, review, grant, explain, replay."""

from __future__ import annotations

import random
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ledger.access.tokens import GRANT_TYP, keys_from_jwks, verify
from ledger.config import Settings
from ledger.consent import csv_import
from ledger.db import transaction
from ledger.images import datasets, synthetic
from ledger.images import service as images
from ledger.images.store import FilesystemStore
from ledger.keystore import load_keyring
from ledger.policy.engine import default_directory
from ledger.principals.models import Role
from ledger.server import create_app
from tests.conftest import MakePrincipal, auth

ISSUER = "urn:test:hospital"
HEADER = "issuer,patient_id,decision,purposes,modifiers\n"


def _population(
    engine: Engine,
    settings: Settings,
    rows: list[str],
    images_per: int = 1,
    burned: set[str] = frozenset(),
) -> dict[str, str]:  # type: ignore[assignment]
    """Consents from CSV rows, one CT per patient, and datasets 'all' and 'small'."""
    keys = load_keyring(settings.keys_dir)
    store = FilesystemStore(settings.objects_dir)
    rng = random.Random(1)
    patients = sorted({r.split(",")[1] for r in rows})
    with transaction(engine) as session:
        csv_import.import_rows(
            session, keys.pseudonym_key, csv_import.parse(HEADER + "".join(rows)), actor="t"
        )
        ids = []
        for p in patients:
            for n in range(images_per):
                data = synthetic.instance(
                    patient_id=p,
                    issuer=ISSUER,
                    modality="CT",
                    body_part="CHEST",
                    study_date=date(2024, 1, 1),
                    study_uid=f"1.2.3.{abs(hash(p)) % 10**8}",
                    series_uid="1.2.3.4",
                    number=n + 1,
                    rng=rng,
                )
                if p in burned:
                    import io

                    import pydicom

                    ds = pydicom.dcmread(io.BytesIO(data))
                    ds.BurnedInAnnotation = "YES"
                    buf = io.BytesIO()
                    ds.save_as(buf, enforce_file_format=True)
                    data = buf.getvalue()
                ids.append(
                    images.ingest(
                        session, store, keys, data, default_issuer=ISSUER, actor="t"
                    ).image.id
                )
        all_ = datasets.create(
            session, datasets.DatasetCreate(name="all", image_ids=ids), actor="t"
        )
        small = datasets.create(
            session, datasets.DatasetCreate(name="small", image_ids=ids[-5:]), actor="t"
        )
    return {"all": all_.id, "small": small.id}


def _rows(permit: int, generative_deny: int = 0, deny_all: int = 0, ncu: int = 0) -> list[str]:
    out = [f"{ISSUER},P{i:03d},permit,ai,\n" for i in range(permit)]
    out += [f"{ISSUER},P{i:03d},deny,ai.generative,\n" for i in range(generative_deny)]
    out += [f"{ISSUER},D{i:03d},deny,ai,\n" for i in range(deny_all)]
    out += [f"{ISSUER},N{i:03d},permit,ai,NCU\n" for i in range(ncu)]
    return out


@pytest.fixture
def world(engine: Engine, settings: Settings) -> dict[str, str]:
    return _population(
        engine, settings, _rows(permit=30, generative_deny=10, deny_all=5, ncu=5), burned={"P000"}
    )


def _file(
    client: TestClient, key: str, dataset: str, purpose: str = "ai.training", **extra: Any
) -> Any:
    return client.post(
        "/v1/access-requests",
        headers=auth(key),
        json={
            "dataset_id": dataset,
            "purpose": purpose,
            "justification": "Train a nodule detector for the lung screening programme.",
            **extra,
        },
    )


def test_file_evaluate_approve_and_verify_grant(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    pipeline, steward = make_principal(Role.pipeline), make_principal(Role.steward)
    r = _file(client, pipeline, world["all"])
    assert r.status_code == 201, r.text
    request = r.json()
    e = request["evaluation"]
    # 30 permit + 5 NCU permit; P000's image is burned in; 5 refused everything.
    assert (e["eligible_count"], e["excluded_count"]) == (34, 6)
    assert e["excluded_by_reason"] == {
        "consent-denies-purpose": 5,
        "burned-in-annotation-never-released": 1,
    }
    assert set(e["composition"]["attributes"]) == {
        "sex",
        "age_band",
        "site",
        "modality",
        "manufacturer",
    }
    assert request["status"] == "evaluated"
    assert e["required_approvals"] == 1
    approved = client.post(
        f"/v1/access-requests/{request['id']}/approve",
        headers=auth(steward),
        json={"comment": "ethics approval on file"},
    )
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "active"
    jwks = client.get("/.well-known/jwks.json").json()
    claims = verify(body["grant"], keys_from_jwks(jwks), typ=GRANT_TYP, audience="ledger-release")
    assert claims["jti"] == body["grant_id"]
    assert claims["image_count"] == 34
    assert claims["manifest_root"] == e["eligible_root"]
    assert len(body["grant"]) < 2048
    again = client.post(
        f"/v1/access-requests/{request['id']}/approve",
        headers=auth(steward),
        json={"comment": "again"},
    )
    assert again.status_code == 409


def test_commercial_request_needs_two_stewards_and_excludes_ncu(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    pipeline = make_principal(Role.pipeline)
    first, second = make_principal(Role.steward), make_principal(Role.steward)
    request = _file(client, pipeline, world["all"], commercial=True).json()
    assert request["evaluation"]["required_approvals"] == 2
    assert request["evaluation"]["excluded_by_reason"]["commercial-use-needs-no-ncu"] == 5
    one = client.post(
        f"/v1/access-requests/{request['id']}/approve", headers=auth(first), json={"comment": "ok"}
    ).json()
    assert one["grant"] is None
    assert one["approvals"] == 1
    two = client.post(
        f"/v1/access-requests/{request['id']}/approve",
        headers=auth(second),
        json={"comment": "ok too"},
    ).json()
    assert two["grant"] is not None


def test_filer_cannot_approve_and_rejected_stays_rejected(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    both = make_principal(Role.pipeline, Role.steward)
    steward = make_principal(Role.steward)
    request = _file(client, both, world["all"]).json()
    own = client.post(
        f"/v1/access-requests/{request['id']}/approve", headers=auth(both), json={"comment": "mine"}
    )
    assert own.status_code == 403
    rejected = client.post(
        f"/v1/access-requests/{request['id']}/reject",
        headers=auth(steward),
        json={"comment": "justification too vague"},
    )
    assert rejected.json()["status"] == "rejected"
    late = client.post(
        f"/v1/access-requests/{request['id']}/approve",
        headers=auth(steward),
        json={"comment": "changed my mind"},
    )
    assert late.status_code == 409


def test_small_cohort_cannot_be_approved(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    pipeline, steward = make_principal(Role.pipeline), make_principal(Role.steward)
    request = _file(client, pipeline, world["small"]).json()
    assert request["evaluation"]["cohort_ok"] is False
    r = client.post(
        f"/v1/access-requests/{request['id']}/approve",
        headers=auth(steward),
        json={"comment": "ok"},
    )
    assert r.status_code == 409
    assert "fewer than 20" in r.json()["detail"]


@pytest.mark.parametrize(
    ("purpose", "dataset", "status"),
    [("ai.generative", "all", 422), ("ai.dreaming", "all", 422), ("ai.training", None, 404)],
)
def test_bad_requests_file_nothing(
    client: TestClient,
    world: dict[str, str],
    make_principal: MakePrincipal,
    purpose: str,
    dataset: str | None,
    status: int,
) -> None:
    pipeline = make_principal(Role.pipeline)
    r = _file(client, pipeline, world[dataset] if dataset else "no-such-dataset", purpose)
    assert r.status_code == status, r.text
    steward = make_principal(Role.steward)
    assert client.get("/v1/access-requests", headers=auth(steward)).json() == []


def test_explain_and_replay(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    pipeline, auditor = make_principal(Role.pipeline), make_principal(Role.auditor)
    request = _file(client, pipeline, world["all"]).json()
    manifest = client.get(
        f"/v1/datasets/{world['all']}/manifest", headers=auth(auditor), params={"limit": 1000}
    ).json()["items"]
    outcomes = [
        client.get(
            f"/v1/access-requests/{request['id']}/images/{item['image_id']}", headers=auth(auditor)
        ).json()
        for item in manifest
    ]
    assert sum(o["eligible"] for o in outcomes) == 34
    refused = [o for o in outcomes if "consent-denies-purpose" in o["policy_ids"]]
    assert len(refused) == 5
    assert all(o["consent_ids"] for o in refused)
    assert any("denied by consent" in reason for reason in refused[0]["reasons"])
    replay = client.get(f"/v1/access-requests/{request['id']}/replay", headers=auth(auditor)).json()
    assert replay["same_answer"] is True
    assert replay["same_policy"] is True
    assert replay["changed_count"] == 0
    other = make_principal(Role.pipeline)
    assert (
        client.get(f"/v1/access-requests/{request['id']}", headers=auth(other)).status_code == 403
    )
    assert (
        client.get(f"/v1/access-requests/{request['id']}", headers=auth(pipeline)).status_code
        == 200
    )


def test_auto_approval_only_where_a_policy_allows_it(
    engine: Engine, settings: Settings, make_principal: MakePrincipal, tmp_path: Path
) -> None:
    world = _population(engine, settings, _rows(permit=110))
    policies = tmp_path / "policies"
    shutil.copytree(default_directory(), policies)
    shutil.copy(policies / "optional" / "auto_approve_validation.cedar", policies)
    app = create_app(settings.model_copy(update={"policy_dir": policies}))
    pipeline = make_principal(Role.pipeline)
    with TestClient(app) as client:
        training = _file(client, pipeline, world["all"]).json()
        assert training["status"] == "evaluated"  # training is not covered by the rule
        validation = _file(client, pipeline, world["all"], "ai.validation").json()
        assert validation["status"] == "active"
        assert validation["evaluation"]["auto_approved"] is True
        assert validation["grant_id"]
        auditor = make_principal(Role.auditor)
        lineage = client.get(
            f"/v1/audit/grants/{validation['grant_id']}/lineage", headers=auth(auditor)
        ).json()
        issued = [e for e in lineage["events"] if e["type"] == "grant.issued"]
        assert issued[0]["data"]["auto_approved"] is True
        assert issued[0]["actor"] is None
