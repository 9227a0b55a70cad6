"""A FHIR client library from PyPI (fhirpy) against a running server (uvicorn on a loopback
port, in a thread): transaction, create, conditional create, read, search, update and
history, as a hospital's integration would drive them."""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

from ledger.principals.models import Role
from tests.conftest import MakePrincipal
from tests.consent.test_fhir import R5
from tests.consent.test_fhir_rest import PATIENT


@pytest.fixture
def base_url(app: FastAPI) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1/fhir"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _client(url: str, key: str, **headers: str) -> SyncFHIRClient:
    return SyncFHIRClient(url, authorization=f"Bearer {key}", extra_headers=headers or None)


def test_fhirpy_drives_the_server(base_url: str, make_principal: MakePrincipal) -> None:
    key = make_principal(Role.registrar)
    client = _client(base_url, key)
    statement = client.execute("metadata", method="get")
    assert statement["resourceType"] == "CapabilityStatement"

    # A transaction Bundle: the Patient and its Consent, linked by urn:uuid.
    consent: dict[str, Any] = copy.deepcopy(R5)
    consent["subject"] = {"reference": "urn:uuid:3f2b4c1d-0000-4000-8000-000000000001"}
    consent["identifier"] = [{"system": "urn:oid:1.2.3.4.5", "value": "form-77"}]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:3f2b4c1d-0000-4000-8000-000000000001",
                "resource": PATIENT,
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": consent, "request": {"method": "POST", "url": "Consent"}},
        ],
    }
    answer = client.execute("", method="post", data=bundle)
    assert answer["type"] == "transaction-response"
    sid = answer["entry"][0]["response"]["location"].removeprefix("Patient/")
    first_id = answer["entry"][1]["response"]["location"].split("/")[1]

    # Create: a second consent for the same patient, the patient contained.
    second = copy.deepcopy(R5)
    second["contained"] = [{**PATIENT, "id": "pat"}]
    second["subject"] = {"reference": "#pat"}
    second["identifier"] = [{"system": "urn:oid:1.2.3.4.5", "value": "form-78"}]
    second["date"] = "2025-05-05"
    created = client.resource("Consent", **second)
    created.save()
    assert created["id"]
    assert created["id"] != first_id
    assert created["subject"]["reference"] == f"Patient/{sid}"

    # Conditional create: the existing consent comes back, nothing new is stored.
    conditional = _client(
        base_url, key, **{"If-None-Exist": "identifier=urn:oid:1.2.3.4.5|form-78"}
    )
    again = conditional.resource("Consent", **second)
    again.save()
    assert again["id"] == created["id"]
    assert again["meta"]["versionId"] == "1"

    # Read and search.
    read = client.reference("Consent", created["id"]).to_resource()
    assert read["meta"]["versionId"] == "1"
    found = client.resources("Consent").search(patient=f"Patient/{sid}").fetch()
    assert {r["id"] for r in found} == {first_id, created["id"]}
    dated = client.resources("Consent").search(patient=sid, date="lt2026-01-01").fetch()
    assert [r["id"] for r in dated] == [created["id"]]

    # Update: a new version; history lists both.
    read["provision"][0]["purpose"] = [{"system": "urn:ledger:purpose", "code": "ai.validation"}]
    read.save()
    assert read["meta"]["versionId"] == "2"
    history = client.execute(f"Consent/{created['id']}/_history", method="get")
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]

    # Errors reach the client as OperationOutcome.
    bad = client.resource("Consent", **{**second, "grantee": [{"reference": "Practitioner/1"}]})
    with pytest.raises(OperationOutcome) as refused:
        bad.save()
    assert "grantee" in str(refused.value)
