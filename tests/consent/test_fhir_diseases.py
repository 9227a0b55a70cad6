"""DUO disease-specific research in FHIR: ``DUO:0000007`` with the disease as a coding of its
own system (ICD-10-CM, MONDO, DOID) beside it in ``purpose``, read as ``DS:<SYSTEM>:<code>``
and exported the same way; what cannot be read is a 422 naming the coding, and nothing is
stored."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from ledger.consent.models import ConsentVersion
from ledger.db import snapshot
from ledger.principals.models import Role
from tests.conftest import MakePrincipal, auth
from tests.consent.test_fhir_examples import _bundle, _importable, _send

FHIR = "application/fhir+json"
DUO = "http://purl.obolibrary.org/obo/duo"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
MONDO = "http://purl.obolibrary.org/obo/mondo.owl"
DS = {"system": DUO, "code": "DUO:0000007", "display": "disease specific research"}
TRAINING = {"system": "urn:ledger:purpose", "code": "ai.training"}


@pytest.fixture
def registrar(make_principal: MakePrincipal) -> dict[str, str]:
    return auth(make_principal(Role.registrar))


def _r5(purpose: list[dict[str, Any]], **provision: Any) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "subject": {"identifier": {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-9"}},
        "decision": "permit",
        "provision": [{"purpose": purpose, **provision}],
    }


def _post(client: TestClient, h: dict[str, str], resource: Any, version: str = "5.0") -> Any:
    return client.post(
        "/v1/fhir/Consent",
        content=json.dumps(resource),
        headers={**h, "Content-Type": f"{FHIR}; fhirVersion={version}"},
    )


def _terms(client: TestClient, h: dict[str, str], subject: str) -> list[tuple[Any, ...]]:
    state = client.get(f"/v1/subjects/{subject}/consents", headers=h).json()
    return sorted(
        (c["decision"], sorted(c["purposes"]), sorted(c["modifiers"]), c["scope"])
        for c in state["consents"]
    )


def _permitted(client: TestClient, h: dict[str, str], subject: str, purpose: str) -> bool:
    r = client.get(f"/v1/subjects/{subject}/permissions", params={"purpose": purpose}, headers=h)
    assert r.status_code == 200, r.text
    return bool(r.json()["permitted"])


def _count(engine: Engine) -> int:
    with snapshot(engine) as session:
        return int(session.execute(select(func.count()).select_from(ConsentVersion)).scalar_one())


def test_hl7_example_with_a_disease_imports_as_ds_and_makes_the_round_trip(
    client: TestClient, registrar: dict[str, str]
) -> None:
    """HL7's consent-example-basic (R4), as a hospital sends it in a Bundle, limited to
    research on lung cancer (ICD-10-CM) and cancer (MONDO, as a bare number under the PURL
    some implementers use)."""
    sent = _importable("r4/consent-example-basic")
    sent["provision"]["period"] = {"start": "2026-01-01"}
    sent["provision"]["purpose"] = [
        TRAINING,
        DS,
        {"system": ICD, "code": "C34.1"},
        {"system": "http://purl.obolibrary.org/obo/mondo", "code": "0004992"},
    ]
    r = _send(client, registrar, _bundle(sent), "4.0")
    assert r.status_code == 200, r.text
    subject = r.json()["entry"][0]["response"]["location"].split("/")[1]
    consent_id = r.json()["entry"][1]["response"]["location"].split("/")[1]
    terms = _terms(client, registrar, subject)
    assert [t[1] for t in terms] == [["DS:ICD10CM:C34.1", "DS:MONDO:0004992", "ai.training"]]
    assert _permitted(client, registrar, subject, "ai.training,DS:C34.1")
    assert _permitted(client, registrar, subject, "ai.training,DS:MONDO:0004992")
    assert not _permitted(client, registrar, subject, "ai.training,DS:C50")

    out = client.get(f"/v1/fhir/Consent/{consent_id}", headers=registrar).json()
    assert out["provision"]["purpose"] == sent["provision"]["purpose"]
    again = _post(client, registrar, out, "4.0")
    assert again.status_code == 200, again.text
    assert _terms(client, registrar, subject) == terms


def test_a_generated_export_carries_the_disease_codings_and_imports_to_the_same_terms(
    client: TestClient, registrar: dict[str, str]
) -> None:
    """A consent recorded through the API (bare and underscore codes, normalised) goes out
    as DUO:0000007 with one coding per disease, and comes back with the same terms."""
    subject = client.post(
        "/v1/subjects",
        json={"issuer": "urn:test:h", "patient_id": "P-DS"},
        headers=registrar,
    ).json()["id"]
    made = client.post(
        "/v1/consents",
        json={
            "subject_id": subject,
            "decision": "permit",
            "purposes": ["ai.training", "DS:c341", "DS:MONDO_0004992"],
            "modifiers": ["NCU"],
            "scope": {"modalities": ["CT"]},
        },
        headers=registrar,
    )
    assert made.status_code == 201, made.text
    before = _terms(client, registrar, subject)
    out = client.get(f"/v1/fhir/Consent/{made.json()['id']}", headers=registrar).json()
    purpose = out["provision"][0]["purpose"]
    assert {"system": "urn:ledger:purpose", "code": "ai.training"} in purpose
    assert DS in purpose
    icd = next(c for c in purpose if c["system"] == ICD)
    assert icd["code"] == "C34.1"
    assert "lung" in icd["display"].lower()  # the ICD-10-CM description
    assert {"system": MONDO, "code": "MONDO:0004992"} in purpose
    assert not any(c["code"].startswith("DS:") for c in purpose)

    # Import it as a new consent of another patient: the same terms.
    for _ in range(2):
        copy_of = copy.deepcopy(out)
        for key in ("id", "meta"):
            copy_of.pop(key)
        copy_of["subject"] = {"identifier": {"system": "urn:test:other", "value": "P-DS-2"}}
        r = _post(client, registrar, copy_of)
        assert r.status_code in (200, 201), r.text
        other = r.json()["subject"]["identifier"]["value"]
        assert _terms(client, registrar, other) == before
        out = r.json()


@pytest.mark.parametrize(
    ("purpose", "element", "says"),
    [
        (
            [TRAINING, DS, {"system": "http://snomed.info/sct", "code": "363358000"}],
            "provision[0].purpose[2]",
            "unknown disease code system 'http://snomed.info/sct'",
        ),
        ([TRAINING, DS], "provision[0].purpose[1]", "needs the disease"),
        (
            [TRAINING, {"system": ICD, "code": "C34.1"}],
            "provision[0].purpose[1]",
            "beside DUO:0000007",
        ),
        (
            [TRAINING, DS, {"system": MONDO, "code": "DOID:162"}],
            "provision[0].purpose[2]",
            "not a MONDO code",
        ),
        ([TRAINING, DS, {"system": ICD, "code": "lung"}], "provision[0].purpose[2]", "ICD-10-CM"),
    ],
)
def test_a_disease_that_cannot_be_read_is_a_422_naming_the_coding(
    client: TestClient,
    registrar: dict[str, str],
    engine: Engine,
    purpose: list[dict[str, Any]],
    element: str,
    says: str,
) -> None:
    r = _post(client, registrar, _r5(purpose))
    assert r.status_code == 422, r.text
    assert element in r.text
    assert says in r.text
    assert _count(engine) == 0


def test_a_disease_in_provision_code_is_refused_pointing_at_purpose(
    client: TestClient, registrar: dict[str, str], engine: Engine
) -> None:
    r = _post(
        client, registrar, _r5([TRAINING], code=[{"coding": [{"system": ICD, "code": "C34.1"}]}])
    )
    assert r.status_code == 422, r.text
    assert "provision[0].code[0].coding[0]" in r.text
    assert "put its coding in purpose" in r.text
    assert _count(engine) == 0


def test_a_refusal_of_a_disease_in_fhir_matches_a_narrower_request(
    client: TestClient, registrar: dict[str, str]
) -> None:
    """A nested deny of cancer research (ICD-10-CM C34, as DUO's own ``duo.owl`` PURL
    names DUO) is not stepped around by asking for an upper-lobe lung cancer."""
    resource = _r5(
        [TRAINING, {"system": DUO, "code": "DUO:0000006"}],
        provision=[
            {
                "purpose": [
                    TRAINING,
                    {"system": "http://purl.obolibrary.org/obo/duo.owl", "code": "DUO:0000007"},
                    {"system": ICD, "code": "C34"},
                ]
            }
        ],
    )
    r = _post(client, registrar, resource)
    assert r.status_code == 201, r.text
    subject = r.json()["subject"]["identifier"]["value"]
    assert _permitted(client, registrar, subject, "ai.training,DS:ICD10CM:E11")
    assert not _permitted(client, registrar, subject, "ai.training,DS:ICD10CM:C34.1")


def test_a_modifier_the_ledger_cannot_read_is_a_422_naming_the_coding(
    client: TestClient, registrar: dict[str, str], engine: Engine
) -> None:
    """Modifiers may carry a value (``CODE:VALUE``); one that does not read is refused
    where it stands, like a disease, rather than later without an element."""
    bad = {"system": "urn:ledger:modifier", "code": "NCU:sometimes"}
    r = _post(client, registrar, _r5([TRAINING, bad]))
    assert r.status_code == 422, r.text
    assert "provision[0].purpose[1]" in r.text
    assert _count(engine) == 0
