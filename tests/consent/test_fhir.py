"""FHIR Consent: R4 and R5 in, R5 out, round trip, and every unmappable element is a 422."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from ledger.consent.models import ConsentVersion
from ledger.db import snapshot
from ledger.principals.models import Role
from tests.conftest import MakePrincipal, auth

FHIR = "application/fhir+json"

R5: dict[str, Any] = {
    "resourceType": "Consent",
    "status": "active",
    "category": [{"coding": [{"system": "http://loinc.org", "code": "57016-8"}]}],
    "subject": {"identifier": {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-5"}},
    "date": "2026-03-01",
    "period": {"start": "2026-03-01T00:00:00Z"},
    "decision": "permit",
    "provision": [
        {
            "purpose": [
                {"system": "urn:ledger:purpose", "code": "ai"},
                {"system": "http://purl.obolibrary.org/obo/duo", "code": "DUO:0000046"},
            ],
            "code": [
                {
                    "coding": [
                        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}
                    ]
                }
            ],
            "provision": [
                {"purpose": [{"system": "urn:ledger:purpose", "code": "ai.development"}]}
            ],
        }
    ],
}

R4: dict[str, Any] = {
    "resourceType": "Consent",
    "id": "consent-example-research",
    "status": "active",
    "scope": {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}
        ]
    },
    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
    "patient": {"identifier": {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}},
    "dateTime": "2026-01-15",
    "policyRule": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]
    },
    "provision": {
        "type": "permit",
        "period": {"start": "2026-01-15", "end": "2036-01-15"},
        "purpose": [
            {"system": "http://purl.obolibrary.org/obo/duo", "code": "DUO:0000006"},
            {"system": "urn:ledger:purpose", "code": "ai.training"},
        ],
        "dataPeriod": {"start": "2020-01-01"},
        "provision": [
            {"type": "deny", "purpose": [{"system": "urn:ledger:purpose", "code": "ai.generative"}]}
        ],
    },
}


@pytest.fixture
def registrar(make_principal: MakePrincipal) -> dict[str, str]:
    return auth(make_principal(Role.registrar))


def _post(client: TestClient, h: dict[str, str], resource: Any, ctype: str = FHIR) -> Any:
    import json

    return client.post(
        "/v1/fhir/Consent", content=json.dumps(resource), headers={**h, "Content-Type": ctype}
    )


def test_r5_import_with_nested_exception(client: TestClient, registrar: dict[str, str]) -> None:
    r = _post(client, registrar, R5)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith(FHIR)
    out = r.json()
    sid = out["subject"]["identifier"]["value"]
    perm = client.get(
        f"/v1/subjects/{sid}/permissions", params={"purpose": "ai.inference"}, headers=registrar
    ).json()
    assert perm["permitted"]
    assert perm["modifiers"] == ["NCU"]
    assert perm["scope"][0]["modalities"] == ["CT"]
    dev = client.get(
        f"/v1/subjects/{sid}/permissions", params={"purpose": "ai.training"}, headers=registrar
    ).json()
    assert not dev["permitted"]
    assert out["provision"][0]["provision"][0]["purpose"][0]["code"] == "ai.development"


def test_r4_import_maps_patient_type_period_and_nested_deny(
    client: TestClient, registrar: dict[str, str]
) -> None:
    r = _post(client, registrar, R4, FHIR + "; fhirVersion=4.0")
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == FHIR + "; fhirVersion=4.0"
    sid = r.json()["patient"]["identifier"]["value"]
    ok = client.get(
        f"/v1/subjects/{sid}/permissions",
        params={"purpose": "ai.training,DS:C34"},
        headers=registrar,
    ).json()
    assert ok["permitted"]
    assert ok["scope"][0]["study_date_from"] == "2020-01-01"
    gen = client.get(
        f"/v1/subjects/{sid}/permissions",
        params={"purpose": "ai.generative,HMB"},
        headers=registrar,
    ).json()
    assert not gen["permitted"]
    same = client.post(
        "/v1/subjects/lookup",
        json={"issuer": "urn:oid:1.2.36.146.595.217.0.1", "patient_id": "12345"},
        headers=registrar,
    ).json()
    assert same["id"] == sid


def test_r5_round_trip(client: TestClient, registrar: dict[str, str], engine: Engine) -> None:
    first = _post(client, registrar, R5).json()
    got = client.get(f"/v1/fhir/Consent/{first['id']}", headers=registrar)
    assert got.status_code == 200
    assert got.json() == first
    for key in ("category", "date", "period", "decision", "provision"):
        assert first[key] == R5[key]
    # The export posted back, or the same resource again: the same consent, nothing new.
    for body in (got.json(), {k: v for k, v in got.json().items() if k not in ("id", "meta")}, R5):
        again = _post(client, registrar, body)
        assert again.status_code == 200, again.text
        assert again.json() == first
    with snapshot(engine) as session:
        assert session.execute(select(func.count()).select_from(ConsentVersion)).scalar_one() == 2


def test_r4_without_type_takes_the_decision_from_policy_rule(
    client: TestClient, registrar: dict[str, str]
) -> None:
    r4 = _with(R4, ["provision", "type"], None)
    r4 = _with(r4, ["policyRule", "coding", 0, "code"], "OPTOUT")
    r4 = _with(r4, ["provision", "provision"], None)
    r = _post(client, registrar, r4)
    assert r.status_code == 201, r.text
    sid = r.json()["patient"]["identifier"]["value"]
    state = client.get(f"/v1/subjects/{sid}/consents", headers=registrar).json()
    assert [c["decision"] for c in state["consents"]] == ["deny"]


def test_withdrawn_consent_reads_back_inactive(
    client: TestClient, registrar: dict[str, str]
) -> None:
    first = _post(client, registrar, R5).json()
    client.post(f"/v1/consents/{first['id']}/withdraw", headers=registrar)
    out = client.get(f"/v1/fhir/Consent/{first['id']}", headers=registrar).json()
    assert out["status"] == "inactive"
    assert "end" in out["period"]


def _with(base: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("resource", "element"),
    [
        (_with(R5, ["resourceType"], "Patient"), "resourceType"),
        (_with(R5, ["status"], "draft"), "status"),
        (_with(R5, ["subject"], {"reference": "Patient/1"}), "subject.reference"),
        (_with(R5, ["grantee"], [{"reference": "Practitioner/1"}]), "grantee"),
        (_with(R5, ["regulatoryBasis"], [{"coding": [{"code": "OPTOUT"}]}]), "regulatoryBasis[0]"),
        (_with(R5, ["implicitRules"], "http://example.org/rules"), "implicitRules"),
        (
            _with(R5, ["modifierExtension"], [{"url": "http://x", "valueBoolean": True}]),
            "modifierExtension",
        ),
        (_with(R5, ["decision"], None), "decision"),
        (
            _with(R5, ["provision", 0, "actor"], [{"reference": {"reference": "Org/1"}}]),
            "provision[0].actor",
        ),
        (
            _with(R5, ["provision", 0, "purpose", 0], {"system": "http://x", "code": "y"}),
            "provision[0].purpose",
        ),
        (
            _with(
                R5,
                ["provision", 0, "purpose", 0],
                {"system": "urn:ledger:purpose", "code": "ai.dreaming"},
            ),
            "provision[0].purpose[0]",
        ),
        (
            _with(R5, ["provision", 0, "code", 0, "coding", 0, "system"], "http://snomed.info/sct"),
            "provision[0].code[0].coding[0]",
        ),
        (
            _with(
                R5,
                ["provision", 0, "provision", 0, "provision"],
                [{"purpose": [{"system": "urn:ledger:purpose", "code": "ai.training"}]}],
            ),
            "provision[0].provision[0].provision[0]",
        ),
        (_with(_with(R4, ["provision", "type"], None), ["policyRule"], None), "provision.type"),
        (_with(R4, ["provision", "type"], "maybe"), "provision.type"),
        (_with(R4, ["policyRule", "coding", 0, "code"], "OPTOUT"), "policyRule"),
        (_with(R4, ["provision", "provision", 0, "type"], "permit"), "provision.provision[0].type"),
        (
            _with(
                R4,
                ["provision", "actor"],
                [{"role": {"text": "x"}, "reference": {"reference": "Org/1"}}],
            ),
            "provision.actor",
        ),
        (_with(R5, ["status"], 12), "status"),
    ],
)
def test_unmappable_resources_are_422_naming_the_element(
    client: TestClient,
    registrar: dict[str, str],
    engine: Engine,
    resource: dict[str, Any],
    element: str,
) -> None:
    r = _post(client, registrar, resource)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(element) or element in r.json()["detail"]
    with snapshot(engine) as session:
        assert session.execute(select(func.count()).select_from(ConsentVersion)).scalar_one() == 0


def test_wrong_media_type_and_bad_json(client: TestClient, registrar: dict[str, str]) -> None:
    assert _post(client, registrar, R5, "text/plain").status_code == 415
    r = client.post(
        "/v1/fhir/Consent", content=b"{not json", headers={**registrar, "Content-Type": FHIR}
    )
    assert r.status_code == 422
    assert _post(client, registrar, R5, FHIR + "; fhirVersion=3.0").status_code == 422
