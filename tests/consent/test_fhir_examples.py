"""The official HL7 Consent examples (R4 4.0.1 and R5 5.0.0, CC0: fhir_examples/README.md),
each sent as a hospital's consent system would: in a transaction Bundle with the Patient
it references, carrying an identifier. Each is imported or refused naming the elements
the ledger cannot honour; never a 500. Then, with a purpose the ledger knows and without
the refused elements, each makes the round trip: the export keeps every element but the
patient's identity, and posting it back changes nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.consent import Consent as ConsentR5
from fhir.resources.R4B.consent import Consent as ConsentR4B

from ledger.consent import fhir_elements
from ledger.principals.models import Role
from tests.conftest import MakePrincipal, auth

FHIR = "application/fhir+json"
HERE = Path(__file__).parent / "fhir_examples"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PURPOSE = {"system": "urn:ledger:purpose", "code": "ai.training"}


def _PKB(root: str) -> list[str]:
    """consent-example-pkb: eleven nested provisions, each with actor, action and label."""
    provisions = [root, *(f"{root}.provision[{i}]" for i in range(11))]
    return [f"{p}.{e}" for p in provisions for e in ("actor", "action", "securityLabel")]


# What the ledger answers to each example as published: the elements it names (all of
# them, in the order of its errors), or [] when it imports. None names a purpose the ledger
# knows (they are privacy consents about record access, not about AI use of images).
REFUSED: dict[str, list[str]] = {
    "r4/consent-example-Emergency": [
        "provision.actor",
        "provision.provision[0].actor",
        "provision.purpose",
    ],
    "r4/consent-example-Out": ["provision.actor", "provision.purpose"],
    "r4/consent-example-basic": ["provision.purpose"],
    "r4/consent-example-grantor": ["provision.actor", "provision.action", "provision.purpose"],
    "r4/consent-example-notAuthor": ["provision.actor", "provision.purpose"],
    "r4/consent-example-notOrg": [
        "provision.actor",
        "provision.action",
        "policyRule",
        "provision.purpose",
    ],
    "r4/consent-example-notThem": ["provision.actor", "provision.action", "provision.purpose"],
    "r4/consent-example-notThis": ["provision.data", "provision.purpose"],
    "r4/consent-example-notTime": ["provision.purpose"],
    "r4/consent-example-pkb": [
        *_PKB("provision"),
        "provision.purpose",
    ],
    "r4/consent-example-signature": [
        "provision.actor",
        "provision.provision[0].actor",
        "provision.provision[0].class",
        "provision.provision[0].code[0].coding[0]",
        "provision.purpose",
    ],
    "r4/consent-example-smartonfhir": [
        "provision.provision[0].action",
        "provision.provision[0].class",
        "provision.purpose",
    ],
    "r5/consent-example-CDA": [
        "grantee",
        "provision[0].actor",
        "provision[0].provision[0].actor",
        "provision[0].provision[0].documentType",
        "provision[0].provision[0].code[0].coding[0]",
        "provision[0].purpose",
    ],
    "r5/consent-example-Emergency": [
        "provision[0].actor",
        "provision[0].provision[0].actor",
        "provision[0].purpose",
    ],
    "r5/consent-example-Out": ["provision[0].actor", "provision[0].purpose"],
    "r5/consent-example-basic": ["provision[0].purpose"],
    "r5/consent-example-grantor": [
        "grantee",
        "provision[0].actor",
        "provision[0].action",
        "provision[0].purpose",
    ],
    "r5/consent-example-notAuthor": ["provision[0].actor", "provision[0].purpose"],
    "r5/consent-example-notOrg": [
        "provision[0].actor",
        "provision[0].action",
        "provision[0].purpose",
    ],
    "r5/consent-example-notThem": [
        "provision[0].actor",
        "provision[0].action",
        "provision[0].purpose",
    ],
    "r5/consent-example-notThis": ["provision[0].data", "provision[0].purpose"],
    "r5/consent-example-notTime": ["provision[0].purpose"],
    "r5/consent-example-pkb": [
        *_PKB("provision[0]"),
        "provision[0].purpose",
    ],
    "r5/consent-example-smartonfhir": [
        "provision[0].provision[0].action",
        "provision[0].provision[0].resourceType",
        "provision[0].purpose",
    ],
}


def _examples() -> list[str]:
    return sorted(
        f"{p.parent.name}/{p.stem.removeprefix('Consent-')}" for p in HERE.glob("r*/Consent-*.json")
    )


def _load(name: str) -> dict[str, Any]:
    folder, stem = name.split("/")
    data: dict[str, Any] = json.loads((HERE / folder / f"Consent-{stem}.json").read_text())
    return data


PATIENT = {
    "resourceType": "Patient",
    "identifier": [
        {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                ]
            },
            "system": "urn:oid:2.16.840.1.113883.19.5.99",
            "value": "MRN-778899-X",
        }
    ],
    "name": [{"family": "van de Heuvel", "given": ["Pieter"]}],
    "telecom": [{"system": "phone", "value": "0648352638"}],
    "address": [{"line": ["Van Egmondkade 23"], "city": "Amsterdam"}],
    "gender": "male",
    "birthDate": "1944-11-17",
}


def _bundle(consent: dict[str, Any]) -> dict[str, Any]:
    """The consent and the Patient it references, as one transaction."""
    key = "patient" if "patient" in consent or "scope" in consent else "subject"
    reference = (consent.get(key) or {}).get("reference", "Patient/example")
    patient = {**PATIENT, "id": reference.rsplit("/", 1)[-1]}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"http://hospital.example/fhir/{reference}",
                "resource": patient,
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": consent, "request": {"method": "POST", "url": "Consent"}},
        ],
    }


@pytest.fixture
def registrar(make_principal: MakePrincipal) -> dict[str, str]:
    return auth(make_principal(Role.registrar))


def _send(client: TestClient, h: dict[str, str], body: Any, version: str) -> Any:
    return client.post(
        "/v1/fhir",
        content=json.dumps(body),
        headers={**h, "Content-Type": f"{FHIR}; fhirVersion={version}"},
    )


def test_the_expectations_cover_every_example() -> None:
    assert sorted(REFUSED) == _examples()
    assert len(_examples()) == 24


@pytest.mark.parametrize("name", _examples())
def test_example_as_published_is_imported_or_refused_naming_the_element(
    client: TestClient, registrar: dict[str, str], name: str
) -> None:
    version = "4.0" if name.startswith("r4") else "5.0"
    r = _send(client, registrar, _bundle(_load(name)), version)
    if not REFUSED[name]:
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 422, r.text
    named = [e["element"] for e in r.json()["errors"]]
    assert named == [f"entry[1].resource.{e}" for e in REFUSED[name]]
    assert r.json()["detail"].startswith(f"entry[1].resource.{REFUSED[name][0]}")


def _importable(name: str) -> dict[str, Any]:
    """The example without the elements the ledger refuses, naming a purpose it knows."""
    version = "R4" if name.startswith("r4") else "R5"
    doc = copy.deepcopy(_load(name))
    for key in [k for k in doc if fhir_elements.refused(fhir_elements.ROOT[version], k)]:
        del doc[key]
    if version == "R4":
        roots = [doc.setdefault("provision", {})]
        roots[0].pop("type", None)  # notOrg's contradicts its policyRule: that decides
    else:
        roots = doc.setdefault("provision", [{}])[:1]
        doc["provision"] = roots
    table = fhir_elements.PROVISION[version]

    def clean(node: dict[str, Any], depth: int) -> None:
        for key in [k for k in node if fhir_elements.refused(table, k)]:
            del node[key]
        node.pop("purpose", None)
        codes = [
            c
            for c in node.get("code") or []
            if all(x.get("system") == DCM for x in c.get("coding") or [])
        ]
        node.pop("code", None)
        if codes:
            node["code"] = codes
        nested = [c for c in node.get("provision") or [] if depth == 0][:1]
        for child in nested:
            clean(child, depth + 1)
            child.pop("type", None)
        if nested:
            node["provision"] = nested
        else:
            node.pop("provision", None)

    clean(roots[0], 0)
    roots[0]["purpose"] = [PURPOSE]
    for child in roots[0].get("provision") or []:
        child["purpose"] = [{"system": "urn:ledger:purpose", "code": "ai.generative"}]
    return doc


def _without_identity(doc: dict[str, Any], key: str) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("id", "text", "meta", key)}
    if doc.get("meta"):
        meta = {k: v for k, v in doc["meta"].items() if k not in ("versionId", "lastUpdated")}
        if meta:
            out["meta"] = meta
    return out


@pytest.mark.parametrize("name", _examples())
def test_example_round_trip(client: TestClient, registrar: dict[str, str], name: str) -> None:
    version = "4.0" if name.startswith("r4") else "5.0"
    key = "patient" if version == "4.0" else "subject"
    sent = _importable(name)
    r = _send(client, registrar, _bundle(sent), version)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["location"].startswith("Patient/")
    sid = entries[0]["response"]["location"].split("/")[1]
    location = entries[1]["response"]["location"]
    consent_id = location.split("/")[1]
    assert location == f"Consent/{consent_id}/_history/1"

    got = client.get(f"/v1/fhir/Consent/{consent_id}", headers=registrar)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == f"{FHIR}; fhirVersion={version}"
    out = got.json()
    (ConsentR4B if version == "4.0" else ConsentR5).model_validate(out)
    # Every element but the patient's identity and the narrative, as sent.
    assert out[key] == {
        "reference": f"Patient/{sid}",
        "identifier": {"system": "urn:ledger:subject", "value": sid},
    }
    expected = json.loads(
        json.dumps(_without_identity(sent, key)).replace(
            json.dumps(sent[key]), json.dumps(out[key])
        )
    )
    assert _without_identity(out, key) == expected
    assert out["meta"]["versionId"] == "1"
    assert "Heuvel" not in got.text
    assert "MRN-778899-X" not in got.text

    # Posting the export back, or the same Bundle again, changes nothing.
    again = client.post(
        "/v1/fhir/Consent",
        content=json.dumps(out),
        headers={**registrar, "Content-Type": f"{FHIR}; fhirVersion={version}"},
    )
    assert again.status_code == 200, again.text
    assert again.json() == out
    same = _send(client, registrar, _bundle(sent), version)
    assert same.json()["entry"][1]["response"]["status"] == "200 OK"
    assert same.json()["entry"][1]["response"]["location"] == location
    history = client.get(f"/v1/fhir/Consent/{consent_id}/_history", headers=registrar).json()
    assert history["total"] == 1
