"""Subjects and consents through the API: recording, correcting, withdrawing, as-of answers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from ledger.consent.models import ConsentVersion
from ledger.db import snapshot
from ledger.principals.models import Role
from ledger.provenance.models import LogEntry
from tests.conftest import MakePrincipal, auth


@pytest.fixture
def registrar(make_principal: MakePrincipal) -> dict[str, str]:
    return auth(make_principal(Role.registrar))


def _subject(client: TestClient, h: dict[str, str], mrn: str = "MRN-1") -> str:
    r = client.post(
        "/v1/subjects",
        json={
            "issuer": "urn:oid:1.2.3",
            "patient_id": mrn,
            "sex": "F",
            "birth_year": 1970,
            "site": "north",
        },
        headers=h,
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def _consent(client: TestClient, h: dict[str, str], sid: str, **kw: Any) -> dict[str, Any]:
    body = {"subject_id": sid, "decision": "permit", "purposes": ["ai"], **kw}
    r = client.post("/v1/consents", json=body, headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _permitted(
    client: TestClient, h: dict[str, str], sid: str, purpose: str, as_of: datetime | None = None
) -> bool:
    params = {"purpose": purpose}
    if as_of is not None:
        params["as_of"] = as_of.isoformat()
    r = client.get(f"/v1/subjects/{sid}/permissions", params=params, headers=h)
    assert r.status_code == 200, r.text
    return bool(r.json()["permitted"])


def test_subject_is_pseudonymous_and_stable(
    client: TestClient, registrar: dict[str, str], engine: Engine
) -> None:
    first = client.post(
        "/v1/subjects", json={"issuer": "urn:h", "patient_id": "P-77"}, headers=registrar
    )
    again = client.post(
        "/v1/subjects", json={"issuer": "urn:h", "patient_id": "P-77"}, headers=registrar
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    found = client.post(
        "/v1/subjects/lookup", json={"issuer": "urn:h", "patient_id": "P-77"}, headers=registrar
    )
    assert found.json()["id"] == first.json()["id"]
    missing = client.post(
        "/v1/subjects/lookup", json={"issuer": "urn:h", "patient_id": "nope"}, headers=registrar
    )
    assert missing.status_code == 404
    with snapshot(engine) as session:
        entries = b"".join(bytes(e) for e in session.execute(select(LogEntry.entry)).scalars())  # type: ignore[call-overload]
    assert b"P-77" not in entries


def test_record_amend_withdraw_and_history(client: TestClient, registrar: dict[str, str]) -> None:
    sid = _subject(client, registrar)
    c = _consent(
        client,
        registrar,
        sid,
        purposes=["ai.training", "HMB"],
        modifiers=["ncu"],
        evidence_sha256="a" * 64,
        scope={"modalities": ["ct"]},
    )
    assert c["scope"]["modalities"] == ["CT"]
    assert c["modifiers"] == ["NCU"]
    assert _permitted(client, registrar, sid, "ai.training,HMB")
    assert _permitted(client, registrar, sid, "ai.training,DS:C34")
    r = client.get(
        f"/v1/subjects/{sid}/permissions", params={"purpose": "ai.training"}, headers=registrar
    ).json()
    assert not r["permitted"]  # HMB-limited consent, request names no research category
    assert "limits use to research" in r["reasons"][1]
    amended = client.post(
        f"/v1/consents/{c['id']}/amend",
        json={"decision": "permit", "purposes": ["ai.inference"], "reason": "form misread"},
        headers=registrar,
    )
    assert amended.status_code == 200
    assert amended.json()["version"] == 2
    assert not _permitted(client, registrar, sid, "ai.training")
    assert _permitted(client, registrar, sid, "ai.inference")
    w = client.post(
        f"/v1/consents/{c['id']}/withdraw", json={"reason": "phone call"}, headers=registrar
    )
    assert w.status_code == 200
    assert w.json()["status"] == "withdrawn"
    assert not _permitted(client, registrar, sid, "ai.inference")
    again = client.post(f"/v1/consents/{c['id']}/withdraw", headers=registrar)
    assert again.status_code == 409
    history = client.get(f"/v1/consents/{c['id']}/history", headers=registrar).json()
    assert [h["event"] for h in history] == ["granted", "amended", "withdrawn"]
    state = client.get(f"/v1/subjects/{sid}/consents", headers=registrar).json()
    assert state["consents"] == []


def test_as_of_answers_the_past_as_it_was_known(
    client: TestClient, registrar: dict[str, str]
) -> None:
    sid = _subject(client, registrar)
    before = datetime.now(UTC)
    time.sleep(0.002)
    c = _consent(client, registrar, sid)
    time.sleep(0.002)
    during = datetime.now(UTC)
    time.sleep(0.002)
    client.post(f"/v1/consents/{c['id']}/withdraw", headers=registrar)
    assert not _permitted(client, registrar, sid, "ai.training", before)
    assert _permitted(client, registrar, sid, "ai.training", during)
    assert not _permitted(client, registrar, sid, "ai.training")
    future = datetime.now(UTC) + timedelta(days=1)
    r = client.get(
        f"/v1/subjects/{sid}/permissions",
        params={"purpose": "ai", "as_of": future.isoformat()},
        headers=registrar,
    )
    assert r.status_code == 422


def test_validity_period(client: TestClient, registrar: dict[str, str]) -> None:
    sid = _subject(client, registrar)
    now = datetime.now(UTC)
    _consent(
        client,
        registrar,
        sid,
        valid_from=(now - timedelta(days=10)).isoformat(),
        valid_until=(now - timedelta(days=1)).isoformat(),
    )
    assert not _permitted(client, registrar, sid, "ai.training")  # expired


def test_withdraw_checks_the_subject(client: TestClient, registrar: dict[str, str]) -> None:
    a, b = _subject(client, registrar, "A"), _subject(client, registrar, "B")
    c = _consent(client, registrar, a)
    r = client.post(f"/v1/consents/{c['id']}/withdraw", params={"subject_id": b}, headers=registrar)
    assert r.status_code == 409
    assert _permitted(client, registrar, a, "ai.training")


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"purposes": ["ai.dreaming"]}, 422),
        ({"purposes": []}, 422),
        ({"decision": "maybe"}, 422),
        ({"modifiers": ["XYZ"]}, 422),
        ({"valid_from": "2026-02-01T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"}, 422),
        ({"valid_from": "2026-02-01T00:00:00"}, 422),
        ({"scope": {"study_date_from": "2026-02-01", "study_date_to": "2026-01-01"}}, 422),
        ({"evidence_sha256": "xyz"}, 422),
        ({"subject_id": "no-such-subject"}, 404),
        ({"colour": "blue"}, 422),
    ],
)
def test_bad_consents_are_refused_and_write_nothing(
    client: TestClient,
    registrar: dict[str, str],
    engine: Engine,
    change: dict[str, Any],
    status: int,
) -> None:
    sid = _subject(client, registrar)
    body = {"subject_id": sid, "decision": "permit", "purposes": ["ai"], **change}
    r = client.post("/v1/consents", json=body, headers=registrar)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    with snapshot(engine) as session:
        assert session.execute(select(func.count()).select_from(ConsentVersion)).scalar_one() == 0


def test_idempotency_key_replays_and_refuses_a_different_body(
    client: TestClient, registrar: dict[str, str], engine: Engine
) -> None:
    sid = _subject(client, registrar)
    body = {"subject_id": sid, "decision": "permit", "purposes": ["ai"]}
    h = {**registrar, "Idempotency-Key": "k-1"}
    first = client.post("/v1/consents", json=body, headers=h)
    second = client.post("/v1/consents", json=body, headers=h)
    assert first.json() == second.json()
    other = client.post("/v1/consents", json={**body, "decision": "deny"}, headers=h)
    assert other.status_code == 422
    with snapshot(engine) as session:
        assert session.execute(select(func.count()).select_from(ConsentVersion)).scalar_one() == 1


def test_purposes_are_public(client: TestClient) -> None:
    body = client.get("/v1/purposes").json()
    codes = {p["code"]: p for p in body["purposes"]}
    assert codes["ai.generative"]["explicit_only"] is True
    assert "NCU" in {m["code"] for m in body["modifiers"]}


ops = st.lists(
    st.tuples(
        st.sampled_from(["permit", "deny", "withdraw", "amend"]),
        st.sampled_from(["ai", "ai.training", "ai.generative", "ai.development"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops)
def test_as_of_answers_never_change_when_history_grows(
    client: TestClient, registrar: dict[str, str], steps: list[tuple[str, str]]
) -> None:
    sid = _subject(client, registrar, f"prop-{time.time_ns()}")
    consents: list[str] = []
    seen: list[tuple[datetime, dict[str, bool]]] = []
    purposes = ["ai.training", "ai.generative", "ai.inference"]
    for op, purpose in steps:
        if op in ("permit", "deny"):
            consents.append(_consent(client, registrar, sid, decision=op, purposes=[purpose])["id"])
        elif consents and op == "withdraw":
            client.post(f"/v1/consents/{consents.pop()}/withdraw", headers=registrar)
        elif consents and op == "amend":
            client.post(
                f"/v1/consents/{consents[-1]}/amend",
                json={"decision": "permit", "purposes": [purpose], "reason": "fix"},
                headers=registrar,
            )
        time.sleep(0.002)
        moment = datetime.now(UTC)
        seen.append((moment, {p: _permitted(client, registrar, sid, p, moment) for p in purposes}))
        time.sleep(0.002)
    for moment, answers in seen:
        assert {p: _permitted(client, registrar, sid, p, moment) for p in purposes} == answers
