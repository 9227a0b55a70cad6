"""Inputs a tester found to end in a 500 (issue 19): each is now a 4xx problem+json, the
same on SQLite and PostgreSQL, and changes nothing."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlmodel import col

from ledger.config import Settings
from ledger.consent.models import ConsentVersion, Subject
from ledger.db import snapshot
from ledger.http.middleware import UPLOAD_PATHS
from ledger.images.models import DatasetRecord
from ledger.principals.models import Principal, Role
from ledger.provenance.models import LogEntry
from ledger.server import create_app
from tests.access.test_release import _approved_grant
from tests.conftest import MakePrincipal, auth
from tests.consent.test_fhir import R5

PROBLEM = "application/problem+json"
BIG = str(2**63)
HUGE = "9" * 20


def _count(engine: Engine, model: type) -> int:
    with snapshot(engine) as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def _refused(r: Any, status: int = 422, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body: dict[str, Any] = r.json()
    if code is not None:
        assert body["type"] == f"urn:ledger:problem:{code}", body
    return body


@pytest.fixture
def keys(make_principal: MakePrincipal) -> dict[str, str]:
    return {
        role.value: make_principal(role)
        for role in (Role.admin, Role.registrar, Role.curator, Role.pipeline, Role.auditor)
    }


# -- NUL and other control characters ------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("registrar", "/v1/subjects/a%00b"),
        ("registrar", "/v1/consents/x%00/history"),
        ("curator", "/v1/datasets/%00/manifest"),
        ("auditor", "/v1/principals/%00"),
        ("auditor", "/v1/principals?cursor=%00"),
        ("registrar", "/v1/subjects/s/permissions?purpose=ai%00"),
        ("pipeline", "/v1/grants/g%00/manifest"),
    ],
)
def test_nul_in_path_or_query_is_422(
    client: TestClient, keys: dict[str, str], role: str, path: str
) -> None:
    _refused(client.get(path, headers=auth(keys[role])))


def test_cursor_decoding_to_nul_is_422(client: TestClient, keys: dict[str, str]) -> None:
    cursor = base64.urlsafe_b64encode(b"a\x00b").decode().rstrip("=")
    _refused(client.get(f"/v1/principals?cursor={cursor}", headers=auth(keys["auditor"])))


def test_nul_in_a_header_is_422(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post(
        "/v1/consents",
        headers={**auth(keys["registrar"]), "Idempotency-Key": "k\x00"},
        json={"subject_id": "s", "decision": "permit", "purposes": ["ai"]},
    )
    _refused(r)


@pytest.mark.parametrize(
    ("role", "path", "body"),
    [
        ("admin", "/v1/principals", {"name": "a\u0000b", "roles": ["admin"]}),
        ("registrar", "/v1/subjects", {"issuer": "urn:h", "patient_id": "P\u0000"}),
        ("registrar", "/v1/subjects", {"issuer": "urn:h", "patient_id": "P", "site": "n\u0000"}),
        ("registrar", "/v1/subjects/lookup", {"issuer": "urn:h\u0000", "patient_id": "P"}),
        ("curator", "/v1/datasets", {"name": "d\u0000", "image_ids": ["x"]}),
        ("pipeline", "/v1/authorize", {"purpose": "ai", "study_instance_uid": "1.2\u0000"}),
        (
            "registrar",
            "/v1/consents",
            {"subject_id": "s", "decision": "permit", "purposes": ["ai\u0000"]},
        ),
        (
            "pipeline",
            "/v1/access-requests",
            {"dataset_id": "d", "purpose": "ai", "justification": "long enough\u0000 text"},
        ),
    ],
)
def test_nul_in_a_json_string_is_422_and_writes_nothing(
    client: TestClient,
    keys: dict[str, str],
    engine: Engine,
    role: str,
    path: str,
    body: dict[str, Any],
) -> None:
    before = _count(engine, LogEntry)
    _refused(client.post(path, headers=auth(keys[role]), json=body))
    assert _count(engine, LogEntry) == before


def test_lone_surrogate_in_json_is_422(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post(
        "/v1/subjects",
        headers={**auth(keys["registrar"]), "Content-Type": "application/json"},
        content=b'{"issuer": "urn:h", "patient_id": "P", "site": "\\ud800"}',
    )
    _refused(r)


@pytest.mark.parametrize(
    "name",
    ["evil\u202egnp.exe", "ad\u200bmin", "tab\tname", "line\nbreak", "para\u2029x", "\x07bell"],
)
def test_principal_names_refuse_controls_bidi_and_zero_width(
    client: TestClient, keys: dict[str, str], engine: Engine, name: str
) -> None:
    before = _count(engine, Principal)
    r = client.post(
        "/v1/principals", headers=auth(keys["admin"]), json={"name": name, "roles": ["auditor"]}
    )
    assert _refused(r)["errors"][0]["loc"] == ["body", "name"]
    assert _count(engine, Principal) == before


def test_printable_names_in_any_script_are_accepted(
    client: TestClient, keys: dict[str, str]
) -> None:
    for name in ("Zoë Ångström", "名前 テスト", "O'Brien-Smith (radiology)"):
        r = client.post(
            "/v1/principals", headers=auth(keys["admin"]), json={"name": name, "roles": ["auditor"]}
        )
        assert r.status_code == 201, r.text


def test_free_text_keeps_newlines(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post(
        "/v1/access-requests",
        headers=auth(keys["pipeline"]),
        json={
            "dataset_id": "nope",
            "purpose": "ai.training",
            "justification": "line one\nline two",
        },
    )
    assert r.status_code == 404, r.text  # the text passed; the dataset does not exist


# -- integers beyond 64 bits ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("auditor", f"/v1/log/entries?start={BIG}"),
        ("auditor", f"/v1/log/entries?start={HUGE}"),
        (None, f"/v1/log/checkpoint?size={BIG}"),
        (None, f"/v1/log/proofs/inclusion?index={BIG}"),
        (None, f"/v1/log/proofs/inclusion?index=0&tree_size={BIG}"),
        (None, f"/v1/log/proofs/consistency?first={BIG}"),
        (None, f"/v1/log/proofs/consistency?first=1&second={BIG}"),
        ("curator", f"/v1/datasets/d/manifest?start={BIG}"),
        ("pipeline", f"/v1/grants/g/manifest?start={BIG}"),
    ],
)
def test_integers_beyond_64_bits_are_422(
    client: TestClient, keys: dict[str, str], role: str | None, path: str
) -> None:
    _refused(client.get(path, headers=auth(keys[role]) if role else {}))


def test_birth_year_beyond_64_bits_is_422(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post(
        "/v1/subjects",
        headers={**auth(keys["registrar"]), "Content-Type": "application/json"},
        content=b'{"issuer": "urn:h", "patient_id": "P", "birth_year": 99999999999999999999}',
    )
    _refused(r)


# -- instants at the ends of time ----------------------------------------------------------


@pytest.mark.parametrize(
    "period",
    [
        {"valid_from": "0001-01-01T00:00:00+14:00"},
        {"valid_until": "9999-12-31T23:59:59-14:00"},
        {"valid_from": "1066-10-14T09:00:00Z"},
        {"valid_until": "3000-01-01T00:00:00Z"},
    ],
)
def test_instants_outside_years_1900_to_2999_are_422(
    client: TestClient, keys: dict[str, str], engine: Engine, period: dict[str, str]
) -> None:
    registrar = auth(keys["registrar"])
    subject = client.post(
        "/v1/subjects", headers=registrar, json={"issuer": "urn:h", "patient_id": "P1"}
    ).json()["id"]
    body = {"subject_id": subject, "decision": "permit", "purposes": ["ai"], **period}
    _refused(client.post("/v1/consents", headers=registrar, json=body))
    assert _count(engine, ConsentVersion) == 0


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("registrar", "/v1/subjects/s/consents?as_of=0001-01-01T00:00:00%2B14:00"),
        ("registrar", "/v1/subjects/s/permissions?purpose=ai&as_of=0001-01-01T00:00:00%2B14:00"),
        ("pipeline", "/v1/revocations?since=0001-01-01T00:00:00%2B14:00"),
        ("pipeline", "/v1/revocations?since=9999-12-31T23:59:59-14:00"),
    ],
)
def test_query_instants_at_the_ends_of_time_are_422(
    client: TestClient, keys: dict[str, str], role: str, path: str
) -> None:
    _refused(client.get(path, headers=auth(keys[role])))


def test_fhir_period_at_the_ends_of_time_is_422(client: TestClient, keys: dict[str, str]) -> None:
    resource = copy.deepcopy(R5)
    resource["period"] = {"start": "0001-01-01T00:00:00+14:00"}
    r = client.post(
        "/v1/fhir/Consent",
        headers={**auth(keys["registrar"]), "Content-Type": "application/fhir+json"},
        content=json.dumps(resource),
    )
    assert r.status_code == 422, r.text


# -- nesting ---------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deeply_nested_grant_header_is_refused_and_logged(
    client: TestClient, keys: dict[str, str], engine: Engine
) -> None:
    header = base64.urlsafe_b64encode(_nested(1100).encode()).decode().rstrip("=")
    token = f"{header}.e30.c2ln"
    r = client.get(
        "/v1/grants/g1/manifest", headers={**auth(keys["pipeline"]), "Ledger-Grant": token}
    )
    _refused(r, 403, "invalid-token")
    with snapshot(engine) as session:
        refusals = session.execute(
            select(col(LogEntry.seq)).where(col(LogEntry.event_type) == "refusal.release")
        ).all()
    assert len(refusals) == 1


@pytest.mark.parametrize("ctype", ["application/json", "application/fhir+json"])
def test_deeply_nested_fhir_json_is_invalid_json(
    client: TestClient, keys: dict[str, str], ctype: str
) -> None:
    body = '{"resourceType": "Consent", "x": ' + _nested(1100) + "}"
    r = client.post(
        "/v1/fhir/Consent",
        headers={**auth(keys["registrar"]), "Content-Type": ctype},
        content=body,
    )
    _refused(r, 422, "invalid-json")


def test_deeply_nested_fhir_extensions_are_invalid_json(
    client: TestClient, keys: dict[str, str], engine: Engine
) -> None:
    ext: dict[str, Any] = {"url": "urn:x", "valueString": "v"}
    for _ in range(150):
        ext = {"url": "urn:x", "extension": [ext]}
    resource = {**copy.deepcopy(R5), "extension": [ext]}
    r = client.post(
        "/v1/fhir/Consent",
        headers={**auth(keys["registrar"]), "Content-Type": "application/fhir+json"},
        content=json.dumps(resource),
    )
    _refused(r, 422, "invalid-json")
    assert _count(engine, ConsentVersion) == 0


def test_deeply_nested_api_json_is_invalid_json(client: TestClient, keys: dict[str, str]) -> None:
    body = '{"name": "x", "roles": ' + _nested(5000) + "}"
    r = client.post(
        "/v1/principals",
        headers={**auth(keys["admin"]), "Content-Type": "application/json"},
        content=body,
    )
    _refused(r, 422, "invalid-json")


# -- malformed JSON: one answer --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "ctype"),
    [
        (b'{"name": "x", "roles": [', "application/json"),
        (b'{"name": "\xff", "roles": ["admin"]}', "application/json"),
        ('{"name": "é", "roles": ["admin"]}'.encode("latin-1"), "application/json"),
        (b'{"name": "x", "roles": ["admin"]}', "application/json; charset=latin-1"),
        (b"\x00", "application/json"),
        (b"[1, 2,]", "application/json"),
        (b'{"name": NaN, "roles": ["admin"]}', "application/json"),
    ],
)
def test_malformed_json_is_always_422_invalid_json(
    client: TestClient, keys: dict[str, str], engine: Engine, content: bytes, ctype: str
) -> None:
    before = _count(engine, Principal)
    r = client.post(
        "/v1/principals", headers={**auth(keys["admin"]), "Content-Type": ctype}, content=content
    )
    _refused(r, 422, "invalid-json")
    assert _count(engine, Principal) == before


def test_malformed_fhir_json_is_the_same_answer(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post(
        "/v1/fhir/Consent",
        headers={**auth(keys["registrar"]), "Content-Type": "application/fhir+json"},
        content=b"{not json",
    )
    _refused(r, 422, "invalid-json")


def test_fhir_clients_get_malformed_json_as_problem_json_too(
    client: TestClient, keys: dict[str, str]
) -> None:
    """Refused at the edge, before any route: problem+json, as a too-large body is."""
    r = client.post(
        "/v1/fhir/Consent",
        headers={
            **auth(keys["registrar"]),
            "Content-Type": "application/fhir+json",
            "Accept": "application/fhir+json",
        },
        content=b'{"resourceType": "Consent", "x": ' + b"[" * 1100 + b"]" * 1100 + b"}",
    )
    _refused(r, 422, "invalid-json")


def test_plain_text_on_a_json_route_gets_the_json_limit(
    settings: Settings, make_principal: MakePrincipal
) -> None:
    small = settings.model_copy(update={"max_json_bytes": 1000})
    key = make_principal(Role.admin)
    with TestClient(create_app(small)) as c:
        r = c.post(
            "/v1/principals",
            content=b"x" * 5000,
            headers={**auth(key), "Content-Type": "text/plain"},
        )
    _refused(r, 413)


def test_upload_routes_keep_the_upload_limit(
    settings: Settings, make_principal: MakePrincipal
) -> None:
    small = settings.model_copy(update={"max_json_bytes": 1000})
    key = make_principal(Role.registrar)
    csv = "issuer,patient_id,decision,purposes\n" + "urn:h,P1,permit,ai\n" * 200
    with TestClient(create_app(small)) as c:
        r = c.post(
            "/v1/consents/import",
            content=csv.encode(),
            headers={**auth(key), "Content-Type": "text/csv"},
        )
    assert r.status_code == 201, r.text


def test_upload_paths_are_the_routes_that_take_non_json_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    uploads = set()
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            if content and not any("json" in media for media in content):
                uploads.add(path)
    assert uploads == set(UPLOAD_PATHS)


# -- the log's inclusion proof by leaf hash ---------------------------------------------------


@pytest.mark.parametrize("value", ["%C3%A9", "not-base64!", "AAAA", "zz" * 32, "%F0%9F%98%80"])
def test_leaf_hash_that_is_not_base64_or_hex_is_422(client: TestClient, value: str) -> None:
    _refused(client.get(f"/v1/log/proofs/inclusion?leaf_hash={value}"))


def test_leaf_hash_in_hex_or_base64_finds_the_entry(
    client: TestClient, keys: dict[str, str]
) -> None:
    client.post("/v1/log/checkpoint", headers=auth(keys["auditor"]))
    proof = client.get("/v1/log/proofs/inclusion?index=0").json()
    digest = base64.b64decode(proof["leaf_hash"])
    for value in (proof["leaf_hash"], digest.hex()):
        r = client.get("/v1/log/proofs/inclusion", params={"leaf_hash": value})
        assert r.status_code == 200, r.text
        assert r.json()["index"] == 0


# -- visibility of models ---------------------------------------------------------------------


def test_pipelines_see_only_their_own_models(
    client: TestClient,
    world: dict[str, str],
    make_principal: MakePrincipal,
    tmp_path: Path,
) -> None:
    owner, _, grant = _approved_grant(client, world, make_principal)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    model = owner.register_model("detector", "1.0", weights, [grant.id])
    other = make_principal(Role.pipeline)
    listed = client.get("/v1/models", headers=auth(other))
    assert listed.status_code == 200
    assert listed.json() == []
    _refused(client.get(f"/v1/models/{model['id']}", headers=auth(other)), 403)
    assert [m["id"] for m in owner.http.get("/v1/models", headers=owner._auth).json()] == [
        model["id"]
    ]
    auditor = make_principal(Role.auditor)
    assert client.get(f"/v1/models/{model['id']}", headers=auth(auditor)).status_code == 200
    assert len(client.get("/v1/models", headers=auth(auditor)).json()) == 1


# -- datasets keep their names printable ------------------------------------------------------


def test_dataset_name_with_bidi_override_is_422(
    client: TestClient, keys: dict[str, str], engine: Engine
) -> None:
    r = client.post(
        "/v1/datasets",
        headers=auth(keys["curator"]),
        json={"name": "chest\u202ect", "image_ids": ["x"]},
    )
    assert _refused(r)["errors"][0]["loc"] == ["body", "name"]
    assert _count(engine, DatasetRecord) == 0
    assert _count(engine, Subject) == 0
