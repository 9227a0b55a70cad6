"""The subject page shows what each consent version says, readably: every purpose with its
label and DUO term, every disease with the code it is read as and its name where the
hierarchy knows it, every modifier with its label; a stored disease code that does not
normalise is shown as kept and failing closed."""

from __future__ import annotations

import html
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ledger.clock import utcnow
from ledger.consent.models import ConsentVersion
from ledger.consent.terms import terms_key
from ledger.db import transaction
from ledger.principals.models import Role
from tests.conftest import MakePrincipal, auth
from tests.consent.test_diseases import ontology  # noqa: F401
from tests.web.test_console import sign_in


def _legacy(engine: Engine, subject_id: str, purposes: list[str]) -> None:
    """A row as versions before code systems were named stored it."""
    scope: dict[str, Any] = {"modalities": [], "body_parts": []}
    with transaction(engine) as session:
        session.add(
            ConsentVersion(
                consent_id=str(uuid.uuid4()),
                version=1,
                subject_id=subject_id,
                event="granted",
                status="active",
                decision="deny",
                purposes=purposes,
                modifiers=[],
                scope=scope,
                terms=terms_key("deny", purposes, [], scope),
                valid_from=utcnow(),
                recorded_at=utcnow(),
                source="api",
            )
        )


def test_subject_page_shows_modifiers_and_diseases_with_their_labels(
    client: TestClient,
    engine: Engine,
    make_principal: MakePrincipal,
    ontology: Any,  # noqa: F811
) -> None:
    key = make_principal(Role.registrar)
    h = auth(key)
    subject = client.post(
        "/v1/subjects", json={"issuer": "urn:test:h", "patient_id": "P-TERMS"}, headers=h
    ).json()["id"]
    made = client.post(
        "/v1/consents",
        json={
            "subject_id": subject,
            "decision": "permit",
            "purposes": ["ai.training", "DS:c341", "DS:MONDO_0004992"],
            "modifiers": ["NCU", "IRB"],
        },
        headers=h,
    )
    assert made.status_code == 201, made.text
    _legacy(engine, subject, ["ai", "DS:lung-cancer"])

    csrf = sign_in(client, key)
    found = client.post(
        "/console/subjects",
        data={"issuer": "urn:test:h", "patient_id": "P-TERMS", "csrf": csrf},
        follow_redirects=False,
    )
    assert found.status_code == 303
    page = client.get(found.headers["location"])
    assert page.status_code == 200
    text = html.unescape(page.text)
    # Purposes: the code as stored, its label and DUO term.
    assert "<code>DS:ICD10CM:C34.1</code> Disease-specific research (<code>DUO:0000007</code>)" in (
        text
    )
    assert "<code>ai.training</code> Training models" in text
    # Diseases: the code read, and its name from ICD-10-CM or the ontology file.
    assert (
        "disease <code>ICD10CM:C34.1</code> Malignant neoplasm of upper lobe, bronchus or lung"
        in text
    )
    assert "disease <code>MONDO:0004992</code> cancer" in text
    # Modifiers, with their labels and DUO terms.
    assert "modifier <code>NCU</code> Non-commercial use only (<code>DUO:0000046</code>)" in text
    assert "modifier <code>IRB</code>" in text
    # A legacy code that does not normalise: kept as stored, and said to fail closed.
    assert "<code>DS:lung-cancer</code> Disease-specific research" in text
    assert "does not normalise: kept, fails closed" in text


def test_auditor_reads_the_same_terms(client: TestClient, make_principal: MakePrincipal) -> None:
    h = auth(make_principal(Role.registrar))
    subject = client.post(
        "/v1/subjects", json={"issuer": "urn:test:h", "patient_id": "P-AUD"}, headers=h
    ).json()["id"]
    client.post(
        "/v1/consents",
        json={"subject_id": subject, "decision": "deny", "purposes": ["DS:C34"]},
        headers=h,
    )
    sign_in(client, make_principal(Role.auditor))
    page = client.get(f"/console/subjects/{subject}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "disease <code>ICD10CM:C34</code> Malignant neoplasm of bronchus and lung" in text
    assert "Record a withdrawal" not in text
