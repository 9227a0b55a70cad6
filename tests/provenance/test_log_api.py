"""The transparency log over HTTP: a client checks checkpoints and proofs with its own code."""

from __future__ import annotations

import base64
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ledger.config import Settings
from ledger.db import transaction
from ledger.principals.models import Role
from ledger.provenance import log
from ledger.provenance.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.provenance.note import Verifier, open_note
from ledger.server import create_app
from tests.conftest import MakePrincipal, auth


def _b(text: str) -> bytes:
    return base64.b64decode(text)


def _append(engine: Engine, n: int) -> None:
    with transaction(engine) as session:
        for i in range(n):
            log.append(session, "test.event", {"i": i})


def _verifier_from_jwks(client: TestClient, origin: str) -> list[Verifier]:
    """What an outside auditor does: public keys from the JWKS, named by the origin."""
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    return [Verifier(origin, base64.urlsafe_b64decode(k["x"] + "==")) for k in keys]


def test_checkpoint_proofs_round_trip(
    client: TestClient, engine: Engine, make_principal: MakePrincipal, settings: Settings
) -> None:
    auditor = make_principal(Role.auditor)
    r = client.get("/v1/log/checkpoint")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")

    _append(engine, 5)
    first = client.post("/v1/log/checkpoint", headers=auth(auditor))
    assert first.status_code == 201
    size1 = first.json()["size"]
    _append(engine, 8)
    assert client.post("/v1/log/checkpoint", headers=auth(auditor)).status_code == 201

    r = client.get("/v1/log/checkpoint")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    checkpoint, signers = open_note(r.text, _verifier_from_jwks(client, settings.log_origin))
    assert signers == [settings.log_origin]
    assert checkpoint.size == size1 + 8

    entries = client.get(
        "/v1/log/entries", params={"start": 0, "limit": 1000}, headers=auth(auditor)
    ).json()["entries"]
    assert [e["index"] for e in entries] == list(range(checkpoint.size))
    for e in entries:
        raw = _b(e["raw"])
        assert leaf_hash(raw) == _b(e["leaf_hash"])
        proof = client.get("/v1/log/proofs/inclusion", params={"index": e["index"]}).json()
        assert proof["tree_size"] == checkpoint.size
        assert verify_inclusion(
            leaf_hash(raw),
            e["index"],
            checkpoint.size,
            [_b(p) for p in proof["proof"]],
            checkpoint.root_hash,
        )
    by_hash = client.get(
        "/v1/log/proofs/inclusion", params={"leaf_hash": entries[3]["leaf_hash"]}
    ).json()
    assert by_hash["index"] == 3

    old = client.get("/v1/log/checkpoint", params={"size": size1, "format": "json"}).json()
    c = client.get("/v1/log/proofs/consistency", params={"first": size1}).json()
    assert c["second"] == checkpoint.size
    assert verify_consistency(
        size1,
        checkpoint.size,
        [_b(p) for p in c["proof"]],
        _b(old["root_hash"]),
        checkpoint.root_hash,
    )


def test_entries_page_and_require_auditor(
    client: TestClient, engine: Engine, make_principal: MakePrincipal
) -> None:
    _append(engine, 7)
    admin = make_principal(Role.admin)
    page = client.get("/v1/log/entries", params={"limit": 3}, headers=auth(admin)).json()
    assert [e["index"] for e in page["entries"]] == [0, 1, 2]
    assert page["next_start"] == 3
    steward = make_principal(Role.steward)
    assert client.get("/v1/log/entries", headers=auth(steward)).status_code == 403
    assert client.get("/v1/log/entries").status_code == 401
    assert client.post("/v1/log/checkpoint", headers=auth(steward)).status_code == 403


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/log/proofs/inclusion", {}, 422),
        ("/v1/log/proofs/inclusion", {"index": 1, "leaf_hash": "AA=="}, 422),
        ("/v1/log/proofs/inclusion", {"index": 99, "tree_size": 3}, 422),
        ("/v1/log/proofs/inclusion", {"index": 5, "tree_size": 3}, 422),
        ("/v1/log/proofs/inclusion", {"leaf_hash": "not base64!"}, 422),
        ("/v1/log/proofs/inclusion", {"leaf_hash": base64.b64encode(b"x" * 32).decode()}, 404),
        ("/v1/log/proofs/inclusion", {"index": -1}, 422),
        ("/v1/log/proofs/consistency", {"first": 0}, 422),
        ("/v1/log/proofs/consistency", {"first": 4, "second": 2}, 422),
        ("/v1/log/checkpoint", {"size": 12345}, 404),
        ("/v1/log/checkpoint", {"format": "xml"}, 422),
    ],
)
def test_bad_proof_requests_are_problems(
    client: TestClient, engine: Engine, path: str, params: dict[str, object], status: int
) -> None:
    _append(engine, 4)
    r = client.get(path, params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_scheduled_checkpoint_signs_new_entries(settings: Settings, engine: Engine) -> None:
    _append(engine, 3)
    app: FastAPI = create_app(settings.model_copy(update={"checkpoint_interval": 0.1}))
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = client.get("/v1/log/checkpoint", params={"format": "json"})
            if r.status_code == 200 and r.json()["size"] == 4:
                break
            time.sleep(0.05)
        assert r.status_code == 200
        assert r.json()["size"] == 4  # 3 appended + the policy set logged at start
        _append(engine, 2)
        while time.monotonic() < deadline:
            if client.get("/v1/log/checkpoint", params={"format": "json"}).json()["size"] == 6:
                return
            time.sleep(0.05)
    pytest.fail("the schedule did not sign the new entries")
