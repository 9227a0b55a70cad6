"""The authorizer's batched decision log: a flush returns only once its batch is durable,
and a batch whose commit fails is kept for the next flush."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from sqlmodel import col

from ledger.access.decision_tokens import DECISION_AUDIENCE, DECISION_TYP
from ledger.access.tokens import keys_from_jwks, verify
from ledger.config import Settings
from ledger.db import snapshot
from ledger.http.app import flush_decisions
from ledger.images.models import Image
from ledger.principals.models import Role
from ledger.provenance.models import LogEntry
from ledger.server import create_app
from tests.access.test_release import _study_of, _subject_of, _withdraw_all, sdk
from tests.conftest import MakePrincipal, auth


def _decision_batches(engine: Engine) -> list[dict[str, Any]]:
    with snapshot(engine) as session:
        rows = session.execute(
            select(LogEntry.entry)
            .where(LogEntry.event_type == "authorize.decisions")
            .order_by(LogEntry.seq)
        ).scalars()
        return [json.loads(bytes(r))["data"] for r in rows]


def _with_commit(sessions: Callable[[], Session], commit: Callable[[Session], None]) -> Any:
    def make() -> Session:
        session = sessions()
        real = session.commit
        session.commit = lambda: commit(session) or real()  # type: ignore[method-assign]
        return session

    return make


def test_a_concurrent_flush_returns_only_once_the_batch_is_durable(
    app: FastAPI, engine: Engine
) -> None:
    state = app.state.ledger
    authorizer = state.authorizer
    for n in range(7):
        authorizer.decisions.refused(pipeline_id="p", study_uid=f"1.2.{n}")
    committing = threading.Event()
    committed_at: list[float] = []

    def slow(_: Session) -> None:
        committing.set()
        time.sleep(0.5)

    def first() -> None:
        authorizer.decisions.flush(_with_commit(state.write_sessions, slow))
        committed_at.append(time.monotonic())

    thread = threading.Thread(target=first)
    thread.start()
    assert committing.wait(10)
    authorizer.decisions.flush(state.write_sessions)  # its decisions are in the first's batch
    returned_at = time.monotonic()
    batches = _decision_batches(engine)  # durable when the second flush returned
    assert [b["count"] for b in batches] == [7]
    thread.join(10)
    assert committed_at
    assert committed_at[0] <= returned_at + 0.05
    assert authorizer.decisions.pending == 0


def test_a_batch_whose_commit_fails_is_logged_by_the_next_flush_exactly_once(
    app: FastAPI, engine: Engine
) -> None:
    state = app.state.ledger
    authorizer = state.authorizer
    for n in range(5):
        authorizer.decisions.refused(pipeline_id="p", study_uid=f"1.2.{n}")

    def fail(_: Session) -> None:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        authorizer.decisions.flush(_with_commit(state.write_sessions, fail))
    assert authorizer.decisions.pending == 5
    assert _decision_batches(engine) == []
    authorizer.decisions.refused(pipeline_id="q", study_uid="1.2.99")
    assert authorizer.decisions.flush(state.write_sessions) == 6
    assert authorizer.decisions.flush(state.write_sessions) == 0
    batches = _decision_batches(engine)
    assert len(batches) == 1
    assert batches[0]["count"] == 6
    assert batches[0]["unknown_studies"] == 6
    assert batches[0]["pipelines"] == ["p", "q"]


def _studies(engine: Engine) -> list[str]:
    with snapshot(engine) as session:
        return sorted(set(session.execute(select(col(Image.study_uid))).scalars()))


def test_batch_authorize_answers_like_the_single_call_in_order(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
) -> None:
    pipeline = sdk(client, make_principal(Role.pipeline))
    studies = _studies(engine)
    asked = [*studies, "1.2.3.999999", studies[0]]  # an unknown study, a repeat
    answers = pipeline.authorize_many("ai.inference", asked)
    assert [a["study_instance_uid"] for a in answers] == asked
    assert answers[-2]["decision"] == "not-found"
    assert answers[-2]["token"] is None
    jwks = keys_from_jwks(client.get("/.well-known/jwks.json").json())
    for uid, answer in zip(studies, answers, strict=False):
        single = pipeline.authorize("ai.inference", uid)
        assert answer["decision"] == single["decision"]
        assert (answer["reasons"], answer["policy_ids"], answer["images"]) == (
            single["reasons"],
            single["policy_ids"],
            single["images"],
        )
        claims = verify(answer["token"], jwks, typ=DECISION_TYP, audience=DECISION_AUDIENCE)
        assert claims["study_sha256"] == hashlib.sha256(uid.encode()).hexdigest()
    assert {a["decision"] for a in answers[: len(studies)]} == {"permit", "deny"}
    assert answers[-1]["decision"] == answers[0]["decision"]

    # A withdrawal turns the cached permits into denies at once.
    registrar = make_principal(Role.registrar)
    subject = _subject_of(client, registrar, "P012")
    study = _study_of(engine, subject)
    assert pipeline.authorize_many("ai.inference", [study])[0]["decision"] == "permit"
    _withdraw_all(client, registrar, subject)
    assert pipeline.authorize_many("ai.inference", [study])[0]["decision"] == "deny"

    flush_decisions(client.app.state.ledger)  # type: ignore[attr-defined]
    batches = _decision_batches(engine)
    assert sum(b["count"] for b in batches) == (len(studies) + 2) + len(studies) + 2
    assert sum(b["unknown_studies"] for b in batches) == 1


def test_batch_authorize_bounds_and_roles(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    pipeline = make_principal(Role.pipeline)
    url = "/v1/authorize/batch"
    body = {"purpose": "ai.inference", "study_instance_uids": ["1.2.3"] * 1_001}
    assert client.post(url, headers=auth(pipeline), json=body).status_code == 422
    body["study_instance_uids"] = []
    assert client.post(url, headers=auth(pipeline), json=body).status_code == 422
    body["study_instance_uids"] = ["1.2.3"] * 1_000
    r = client.post(url, headers=auth(pipeline), json=body)
    assert r.status_code == 200, r.text
    assert len(r.json()["decisions"]) == 1_000
    body["purpose"] = "ai.astrology"
    single = {"purpose": "ai.astrology", "study_instance_uid": "1.2.3"}
    refused = client.post("/v1/authorize", headers=auth(pipeline), json=single).status_code
    assert refused >= 400
    assert client.post(url, headers=auth(pipeline), json=body).status_code == refused
    steward = make_principal(Role.steward)
    body["purpose"] = "ai.inference"
    assert client.post(url, headers=auth(steward), json=body).status_code == 403


def test_calls_past_flush_at_log_their_decisions_in_the_background(
    settings: Settings,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ledger.http.routers import grants

    monkeypatch.setattr(grants, "FLUSH_AT", 3)
    hourly = create_app(settings.model_copy(update={"decision_log_interval": 3600}))
    with TestClient(hourly) as client:  # no scheduled flush in this test's time
        pipeline = sdk(client, make_principal(Role.pipeline))
        studies = _studies(engine)[:4]
        for study in studies[:3]:
            pipeline.authorize("ai.inference", study)  # the third starts a flush, unawaited
        deadline = time.monotonic() + 10
        while not _decision_batches(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [b["count"] for b in _decision_batches(engine)] == [3]
        pipeline.authorize_many("ai.inference", studies)
        while len(_decision_batches(engine)) < 2 and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        assert [b["count"] for b in _decision_batches(engine)] == [3, 4]
