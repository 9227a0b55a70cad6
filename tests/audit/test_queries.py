"""Auditor lineage and PROV-JSON, over entries written the way services write them."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from prov.model import ProvDocument
from sqlalchemy import Engine

from ledger.config import Settings
from ledger.consent import subjects
from ledger.db import transaction
from ledger.keystore import load_keyring
from ledger.principals.models import Role
from ledger.provenance import log
from ledger.provenance.commitments import erase_salt, subject_commitment
from tests.conftest import MakePrincipal, auth


@pytest.fixture
def story(engine: Engine, settings: Settings) -> dict[str, str]:
    """Two patients consent; one dataset; a request, a grant, a release, a model."""
    keys = load_keyring(settings.keys_dir)
    ids: dict[str, str] = {}
    with transaction(engine) as session:
        for mrn in ("MRN-A", "MRN-B"):
            subject, _ = subjects.get_or_create(
                session, keys.pseudonym_key, "urn:h", mrn, actor="registrar-1"
            )
            ids[mrn] = subject.id
            log.append(
                session,
                "consent.recorded",
                {
                    "subject": subject_commitment(session, subject.id),
                    "consent_id": f"c-{mrn}",
                    "decision": "permit",
                    "purposes": ["ai.training"],
                },
                actor="registrar-1",
            )
        commitments = [subject_commitment(session, ids[m]) for m in ("MRN-A", "MRN-B")]
        log.append(
            session, "dataset.created", {"dataset_id": "ds-1", "image_count": 2}, actor="curator-1"
        )
        log.append(
            session,
            "request.evaluated",
            {
                "request_id": "rq-1",
                "dataset_id": "ds-1",
                "purpose": "ai.training",
                "eligible_count": 2,
            },
            actor="pipeline-1",
        )
        log.append(
            session,
            "grant.issued",
            {"grant_id": "g-1", "request_id": "rq-1", "dataset_id": "ds-1"},
            actor="steward-1",
        )
        log.append(
            session,
            "release.manifest",
            {"grant_id": "g-1", "subjects": commitments},
            actor="pipeline-1",
        )
        log.append(
            session, "model.registered", {"model_id": "m-1", "grant_id": "g-1"}, actor="pipeline-1"
        )
        log.append(session, "test.unrelated", {"dataset_id": "ds-2"}, actor="curator-1")
    return ids


def test_subject_lineage(
    client: TestClient, story: dict[str, str], make_principal: MakePrincipal
) -> None:
    key = make_principal(Role.auditor)
    r = client.get(f"/v1/audit/subjects/{story['MRN-A']}/lineage", headers=auth(key))
    assert r.status_code == 200, r.text
    body = r.json()
    # The subject's own entries, then what its release leads to: grant, request, dataset,
    # and the model trained under the grant. Another subject's consent is not included.
    assert [e["type"] for e in body["events"]] == [
        "subject.created",
        "consent.recorded",
        "dataset.created",
        "request.evaluated",
        "grant.issued",
        "release.manifest",
        "model.registered",
    ]
    assert body["summary"] == {
        "subject": 1,
        "consent": 1,
        "dataset": 1,
        "request": 1,
        "grant": 1,
        "release": 1,
        "model": 1,
    }
    assert story["MRN-A"] not in r.text  # only the commitment names the subject


def test_model_lineage_follows_grant_request_and_dataset(
    client: TestClient, story: dict[str, str], make_principal: MakePrincipal
) -> None:
    key = make_principal(Role.auditor)
    body = client.get("/v1/audit/models/m-1/lineage", headers=auth(key)).json()
    types = [e["type"] for e in body["events"]]
    assert types == [
        "dataset.created",
        "request.evaluated",
        "grant.issued",
        "release.manifest",
        "model.registered",
    ]
    grant = client.get("/v1/audit/grants/g-1/lineage", headers=auth(key)).json()
    assert "model.registered" in [e["type"] for e in grant["events"]]
    assert "test.unrelated" not in [e["type"] for e in grant["events"]]


@pytest.mark.parametrize("path", ["/v1/audit/models/m-1/prov", "/v1/audit/grants/g-1/prov"])
def test_prov_json_is_valid(
    client: TestClient, story: dict[str, str], make_principal: MakePrincipal, path: str
) -> None:
    key = make_principal(Role.auditor)
    r = client.get(path, headers=auth(key))
    assert r.status_code == 200
    doc = ProvDocument.deserialize(content=json.dumps(r.json()), format="json")
    records = list(doc.get_records())
    assert any(
        getattr(rec, "identifier", None) and "model-m-1" in str(rec.identifier) for rec in records
    )
    assert doc.unified()  # PROV constraints: no conflicting duplicate records
    kinds = {type(rec).__name__ for rec in records}
    assert {"ProvActivity", "ProvEntity", "ProvAgent", "ProvGeneration", "ProvUsage"} <= kinds


def test_subject_prov(
    client: TestClient, story: dict[str, str], make_principal: MakePrincipal
) -> None:
    key = make_principal(Role.auditor)
    r = client.get(f"/v1/audit/subjects/{story['MRN-B']}/prov", headers=auth(key))
    assert r.status_code == 200
    ProvDocument.deserialize(content=json.dumps(r.json()), format="json")


def test_erased_subject_lineage_is_gone(
    client: TestClient, engine: Engine, story: dict[str, str], make_principal: MakePrincipal
) -> None:
    key = make_principal(Role.auditor)
    with transaction(engine) as session:
        erase_salt(session, story["MRN-A"])
    r = client.get(f"/v1/audit/subjects/{story['MRN-A']}/lineage", headers=auth(key))
    assert r.status_code == 410
    assert r.headers["content-type"].startswith("application/problem+json")


def test_unknown_things_are_not_found(
    client: TestClient, story: dict[str, str], make_principal: MakePrincipal
) -> None:
    key = make_principal(Role.auditor)
    for path in ("/v1/audit/subjects/nope/lineage", "/v1/audit/models/nope/lineage"):
        assert client.get(path, headers=auth(key)).status_code == 404


def test_releases_after_withdrawal_are_found(
    client: TestClient, engine: Engine, settings: Settings, make_principal: MakePrincipal
) -> None:
    """Release entries (written by the release service) are re-checked against consent
    as known at the moment of each release."""
    from ledger.consent import service
    from ledger.consent.schemas import ConsentCreate, WithdrawBody

    keys = load_keyring(settings.keys_dir)
    auditor = auth(make_principal(Role.auditor))
    with transaction(engine) as session:
        subject, _ = subjects.get_or_create(session, keys.pseudonym_key, "urn:h", "R1", actor="t")
        consent = service.record(
            session,
            ConsentCreate(subject_id=subject.id, decision="permit", purposes=["ai.training"]),
            actor="t",
        )
        commitment = subject_commitment(session, subject.id)
        log.append(
            session,
            "release.manifest",
            {"grant_id": "g-1", "purpose": "ai.training", "subjects": [commitment]},
        )
    ok = client.get("/v1/audit/releases-after-withdrawal", headers=auditor).json()
    assert ok == {"checked": 1, "violations": []}
    with transaction(engine) as session:
        service.withdraw(session, consent.consent_id, WithdrawBody(), actor="t")
        log.append(
            session,
            "release.instance",
            {"grant_id": "g-1", "purpose": "ai.training", "subject": commitment},
        )
    bad = client.get("/v1/audit/releases-after-withdrawal", headers=auditor).json()
    assert bad["checked"] == 2
    assert len(bad["violations"]) == 1
    violation = bad["violations"][0]
    assert violation["type"] == "release.instance"
    assert violation["subject"] == commitment
    assert "no consent in force" in violation["reasons"][0]
