"""The FHIR server's REST semantics: metadata, transaction Bundles, contained Patients,
conditional create, update, search, history, OperationOutcome errors, and no identifier
at rest, before or after erasure."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.bundle import Bundle
from fhir.resources.capabilitystatement import CapabilityStatement
from fhir.resources.operationoutcome import OperationOutcome
from sqlalchemy import Engine, func, select, text

import ledger.tables  # noqa: F401
from ledger.consent.models import ConsentVersion, Subject
from ledger.db import metadata, snapshot
from ledger.principals.models import Role
from tests.conftest import MakePrincipal, auth
from tests.consent.test_fhir import R5

FHIR = "application/fhir+json"
MRN = "MRN-4417-QZ"
SECRETS = (MRN, "Zwaardemaker", "Hendrikje", "+31-20-5550199", "Prinsengracht 263")

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": MRN}],
    "name": [{"family": "Zwaardemaker", "given": ["Hendrikje"]}],
    "telecom": [{"system": "phone", "value": "+31-20-5550199"}],
    "address": [{"line": ["Prinsengracht 263"], "city": "Amsterdam"}],
    "gender": "female",
    "birthDate": "1961-04-02",
}
CONSENT_ID = {"system": "urn:oid:1.2.3.4.5", "value": "form-2026-0001"}


def _consent(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(R5)
    doc["subject"] = {"reference": "urn:uuid:7c1e6b4e-0c1a-4d8e-9a57-1f0f7c5b9a11"}
    doc["identifier"] = [CONSENT_ID]
    doc["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Hendrikje Zwaardemaker agrees</div>',
    }
    doc.update(changes)
    return doc


def _bundle(*consents: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:7c1e6b4e-0c1a-4d8e-9a57-1f0f7c5b9a11",
                "resource": PATIENT,
                "request": {"method": "POST", "url": "Patient"},
            },
            *({"resource": c, "request": {"method": "POST", "url": "Consent"}} for c in consents),
        ],
    }


@pytest.fixture
def registrar(make_principal: MakePrincipal) -> dict[str, str]:
    return {**auth(make_principal(Role.registrar)), "Accept": FHIR}


def _post(client: TestClient, h: dict[str, str], path: str, body: Any, **headers: str) -> Any:
    return client.post(
        path, content=json.dumps(body), headers={**h, "Content-Type": FHIR, **headers}
    )


def _count(engine: Engine, model: Any) -> int:
    with snapshot(engine) as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_metadata_is_a_capability_statement(client: TestClient, registrar: dict[str, str]) -> None:
    r = client.get("/v1/fhir/metadata", headers=registrar)
    assert r.status_code == 200
    statement = CapabilityStatement.model_validate(r.json())
    consent = next(res for res in statement.rest[0].resource if res.type == "Consent")
    assert {i.code for i in consent.interaction} >= {"create", "read", "update", "search-type"}
    assert consent.conditionalCreate


def test_transaction_resolves_the_patient_and_keeps_only_its_key(
    client: TestClient, registrar: dict[str, str], engine: Engine
) -> None:
    r = _post(client, registrar, "/v1/fhir", _bundle(_consent()))
    assert r.status_code == 200, r.text
    answer = Bundle.model_validate(r.json())
    assert answer.type == "transaction-response"
    patient, consent = r.json()["entry"]
    assert patient["response"]["status"] == "201 Created"
    sid = patient["response"]["location"].removeprefix("Patient/")
    assert consent["response"]["location"].endswith("/_history/1")
    assert consent["response"]["status"] == "201 Created"
    assert consent["resource"]["subject"]["reference"] == f"Patient/{sid}"
    assert "text" not in consent["resource"]
    assert consent["resource"]["identifier"] == [CONSENT_ID]
    with snapshot(engine) as session:
        subject = session.get(Subject, sid)
        assert subject is not None
        assert (subject.sex, subject.birth_year) == ("F", 1961)
    # The subject is the one the patient's identifier names everywhere else.
    same = client.post(
        "/v1/subjects/lookup",
        json={"issuer": "urn:oid:2.16.840.1.113883.19.5", "patient_id": MRN},
        headers=registrar,
    )
    assert same.json()["id"] == sid
    got = client.get(f"/v1/fhir/Patient/{sid}", headers=registrar).json()
    assert got == {
        "resourceType": "Patient",
        "id": sid,
        "identifier": [{"system": "urn:ledger:subject", "value": sid}],
        "gender": "female",
        "birthDate": "1961",
    }


def test_a_transaction_is_all_or_nothing(
    client: TestClient, registrar: dict[str, str], engine: Engine
) -> None:
    bad = _consent(grantee=[{"reference": "Practitioner/1"}], identifier=[])
    r = _post(client, registrar, "/v1/fhir", _bundle(_consent(), bad))
    assert r.status_code == 422
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[2].resource.grantee"]
    assert _count(engine, ConsentVersion) == 0
    assert _count(engine, Subject) == 0


def test_contained_patient(client: TestClient, registrar: dict[str, str]) -> None:
    doc = _consent(subject={"reference": "#p"}, contained=[{**PATIENT, "id": "p"}])
    r = _post(client, registrar, "/v1/fhir/Consent", doc)
    assert r.status_code == 201, r.text
    assert "contained" not in r.json()
    assert r.headers["location"].endswith(f"/v1/fhir/Consent/{r.json()['id']}/_history/1")
    assert r.headers["etag"] == 'W/"1"'


def test_a_bare_reference_says_to_send_the_patient(
    client: TestClient, registrar: dict[str, str]
) -> None:
    r = _post(
        client, registrar, "/v1/fhir/Consent", _consent(subject={"reference": "Patient/f001"})
    )
    assert r.status_code == 422
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Consent.subject.reference"]
    assert "send the Patient" in issue["diagnostics"]


def test_no_known_purpose_lists_what_was_found(
    client: TestClient, registrar: dict[str, str]
) -> None:
    doc = _consent()
    doc["provision"][0]["purpose"] = [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}
    ]
    r = _post(client, registrar, "/v1", {})  # not a FHIR route: problem+json
    assert r.headers["content-type"].startswith("application/problem+json")
    r = _post(client, registrar, "/v1/fhir", _bundle(doc))
    assert r.status_code == 422
    text_ = r.json()["issue"][0]["diagnostics"]
    assert "v3-ActReason|HRESCH" in text_
    assert "urn:ledger:purpose" in text_
    assert "http://purl.obolibrary.org/obo/duo" in text_


def test_conditional_create(client: TestClient, registrar: dict[str, str], engine: Engine) -> None:
    first = _post(client, registrar, "/v1/fhir", _bundle(_consent())).json()
    consent_id = first["entry"][1]["resource"]["id"]
    condition = f"identifier={CONSENT_ID['system']}|{CONSENT_ID['value']}"
    changed = _consent(date="2026-03-02")
    changed["subject"] = first["entry"][1]["resource"]["subject"]
    before = _count(engine, ConsentVersion)
    r = _post(client, registrar, "/v1/fhir/Consent", changed, **{"If-None-Exist": condition})
    assert r.status_code == 200
    assert r.json()["id"] == consent_id
    assert _count(engine, ConsentVersion) == before
    # Without the condition, the same business identifier is a conflict, not a duplicate.
    r = _post(client, registrar, "/v1/fhir/Consent", changed)
    assert r.status_code == 409
    assert r.json()["issue"][0]["code"] == "conflict"
    bad = _post(client, registrar, "/v1/fhir/Consent", changed, **{"If-None-Exist": "date=x"})
    assert bad.status_code == 422


def test_update_history_and_version_read(
    client: TestClient, registrar: dict[str, str], engine: Engine
) -> None:
    created = _post(client, registrar, "/v1/fhir", _bundle(_consent())).json()["entry"][1]
    resource = created["resource"]
    consent_id = resource["id"]
    url = f"/v1/fhir/Consent/{consent_id}"
    put = lambda body, **h: client.put(  # noqa: E731
        url, content=json.dumps(body), headers={**registrar, "Content-Type": FHIR, **h}
    )
    # The same content again: no new version.
    assert put(resource).status_code == 200
    assert _count(engine, ConsentVersion) == 2
    changed = copy.deepcopy(resource)
    changed["provision"][0]["purpose"] = [{"system": "urn:ledger:purpose", "code": "ai.inference"}]
    assert put(changed, **{"If-Match": 'W/"7"'}).status_code == 412
    r = put(changed, **{"If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"
    assert r.headers["location"].endswith("/_history/2")
    sid = resource["subject"]["identifier"]["value"]
    now = client.get(f"/v1/subjects/{sid}/consents", headers=registrar).json()["consents"]
    root = next(c for c in now if c["id"] == consent_id)
    assert (root["version"], root["event"], root["source"]) == (2, "amended", "fhir")
    assert root["purposes"] == ["ai.inference"]
    history = client.get(f"{url}/_history", headers=registrar).json()
    Bundle.model_validate(history)
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert (
        history["entry"][1]["resource"]["provision"][0]["purpose"] == R5["provision"][0]["purpose"]
    )
    old = client.get(f"{url}/_history/1", headers=registrar).json()
    assert old["provision"] == R5["provision"]
    assert client.get(f"{url}/_history/9", headers=registrar).status_code == 404
    # Moving a consent to another patient is refused; status inactive withdraws.
    moved = copy.deepcopy(changed)
    moved["subject"] = {"identifier": {"system": "urn:oid:9.9", "value": "someone-else"}}
    assert put(moved).status_code == 422
    withdrawn = put({**changed, "status": "inactive"})
    assert withdrawn.status_code == 200
    assert withdrawn.json()["status"] == "inactive"
    assert withdrawn.json()["period"]["end"]
    assert put(changed).status_code == 409


def test_search(client: TestClient, registrar: dict[str, str]) -> None:
    out = _post(client, registrar, "/v1/fhir", _bundle(_consent())).json()
    sid = out["entry"][0]["response"]["location"].removeprefix("Patient/")
    other = _consent(
        identifier=[{"system": "urn:oid:1.2.3.4.5", "value": "form-2"}], date="2025-06-01"
    )
    other["subject"] = {
        "reference": f"Patient/{sid}",
        "identifier": {"system": "urn:ledger:subject", "value": sid},
    }
    second = _post(client, registrar, "/v1/fhir/Consent", other).json()["id"]

    def ids(**params: str) -> list[str]:
        r = client.get("/v1/fhir/Consent", params=params, headers=registrar)
        assert r.status_code == 200, r.text
        Bundle.model_validate(r.json())
        assert r.json()["type"] == "searchset"
        return [e["resource"]["id"] for e in r.json().get("entry", [])]

    first = out["entry"][1]["resource"]["id"]
    assert ids(patient=f"Patient/{sid}") == [second, first]
    assert ids(patient=sid, date="ge2026-01-01") == [first]
    assert ids(patient=sid, date="lt2026-01-01") == [second]
    assert ids(patient=sid, date="2025-06") == [second]
    assert ids(identifier="urn:oid:1.2.3.4.5|form-2") == [second]
    client.post(f"/v1/consents/{second}/withdraw", headers=registrar)
    assert ids(patient=sid, status="active") == [first]
    assert ids(patient=sid, status="inactive") == [second]
    assert (
        client.get("/v1/fhir/Consent", params={"status": "active"}, headers=registrar).status_code
        == 422
    )
    assert (
        client.get(
            "/v1/fhir/Consent", params={"patient": sid, "actor": "x"}, headers=registrar
        ).status_code
        == 422
    )


def test_errors_are_operation_outcomes_for_fhir_clients(
    client: TestClient, registrar: dict[str, str]
) -> None:
    r = client.get("/v1/fhir/Consent/nope", headers=registrar)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith(FHIR)
    OperationOutcome.model_validate(r.json())
    assert r.json()["issue"][0]["code"] == "not-found"
    r = client.get("/v1/fhir/Consent/nope", headers={"Accept": FHIR})
    assert r.status_code == 401
    assert r.json()["issue"][0]["code"] == "login"
    plain = {k: v for k, v in registrar.items() if k != "Accept"}
    r = client.get("/v1/fhir/Consent/nope", headers=plain)
    assert r.headers["content-type"].startswith("application/problem+json")


def _database_bytes(engine: Engine) -> bytes:
    """Everything the database holds: the SQLite file and its WAL, or every row of every
    table as PostgreSQL writes it out."""
    if engine.dialect.name == "sqlite":
        path = Path(str(engine.url.database))
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    chunks = []
    with engine.connect() as conn:
        for name in metadata.tables:
            rows = conn.execute(text(f'SELECT t::text FROM "{name}" t')).scalars()
            chunks += [row.encode() for row in rows]
    return b"\n".join(chunks)


def test_no_identifier_at_rest_and_erasure_makes_it_gone(
    client: TestClient, registrar: dict[str, str], engine: Engine
) -> None:
    out = _post(client, registrar, "/v1/fhir", _bundle(_consent())).json()
    sid = out["entry"][0]["response"]["location"].removeprefix("Patient/")
    consent_id = out["entry"][1]["resource"]["id"]
    stored = _database_bytes(engine)
    for value in (*SECRETS, CONSENT_ID["value"]):
        assert value.encode() not in stored, value
    r = client.post(f"/v1/subjects/{sid}/erase", headers=registrar)
    assert r.status_code == 200, r.text
    for path in (
        f"/v1/fhir/Consent/{consent_id}",
        f"/v1/fhir/Consent/{consent_id}/_history",
        f"/v1/fhir/Patient/{sid}",
    ):
        assert client.get(path, headers=registrar).status_code == 410, path
    assert (
        client.get("/v1/fhir/Consent", params={"patient": sid}, headers=registrar).status_code
        == 410
    )
    stored = _database_bytes(engine)
    for value in (*SECRETS, CONSENT_ID["value"]):
        assert value.encode() not in stored, value
    # The same patient and consent sent again make a new subject and consent: the old ones
    # can no longer be found, by the patient's identifier or the consent's.
    again = _post(client, registrar, "/v1/fhir", _bundle(_consent())).json()
    assert again["entry"][0]["response"]["location"] != f"Patient/{sid}"
    assert again["entry"][1]["response"]["status"] == "201 Created"
