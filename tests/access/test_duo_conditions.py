"""Issue 23: several diseases per request, the conditions a request states (PUB, RTN, COL,
MOR) becoming the grant's obligations, and the valued modifiers GS (the requester's region)
and TS (a time limit that ends a consent's use, re-checked at release), through the whole
decision path on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ledger.access import release
from ledger.access.tokens import GRANT_TYP, keys_from_jwks, verify
from ledger.config import Settings
from ledger.consent import in_force
from ledger.principals.models import Role
from tests.access.test_access_api import ISSUER, _file, _population
from tests.conftest import MakePrincipal, auth

TOMORROW = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()


@pytest.fixture
def world(engine: Engine, settings: Settings) -> dict[str, str]:
    def rows(prefix: str, decision: str, purposes: str, modifiers: str = "") -> list[str]:
        return [f"{ISSUER},{prefix}{i:03d},{decision},{purposes},{modifiers}\n" for i in range(5)]

    out = [f"{ISSUER},A{i:03d},permit,ai,\n" for i in range(25)]
    out += rows("P", "permit", "ai", "PUB")
    out += rows("C", "permit", "ai", "RTN;COL")
    out += rows("M", "permit", "ai", "MOR:2027-06-30")
    out += rows("G", "permit", "ai", "GS:EU")
    out += rows("T", "permit", "ai", f"TS:{TOMORROW}")
    out += rows("Z", "permit", "ai", "TS:2020-01-31")  # ended long ago
    out += rows("D", "permit", "ai;DS:C34")  # one of the two diseases only
    out += rows("E", "permit", "ai;DS:C34;DS:C50")  # both
    out += rows("X", "permit", "ai;HMB") + rows("X", "deny", "DS:C50")
    return _population(engine, settings, out)


def _evaluation(r: Any) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    return dict(r.json()["evaluation"])


DISEASES = "ai.training,DS:C50.9,DS:ICD10CM:C34.1"


@pytest.mark.parametrize("whole_table", [False, True])
def test_several_diseases_and_the_conditions_a_request_states(
    client: TestClient,
    world: dict[str, str],
    make_principal: MakePrincipal,
    monkeypatch: pytest.MonkeyPatch,
    whole_table: bool,
) -> None:
    if whole_table:  # the path of large datasets (packed rows on PostgreSQL)
        monkeypatch.setattr(in_force, "WHOLE_TABLE_AFTER", 0)
    pipeline, admin, steward = (
        make_principal(Role.pipeline),
        make_principal(Role.admin),
        make_principal(Role.steward),
    )
    r = _file(client, pipeline, world["all"], DISEASES)
    request = r.json()
    # Canonical and sorted, whatever order and spelling they were filed in.
    assert (request["purpose"], request["duo_category"]) == (
        "ai.training",
        "DS:ICD10CM:C34.1,DS:ICD10CM:C50.9",
    )
    e = _evaluation(r)
    assert e["excluded_by_reason"] == {
        "no-permit": 10,  # D: C34 permitted, C50 not; Z: time limit passed
        "consent-denies-purpose": 5,  # X: C50 refused
        "pub-needs-a-publication-commitment": 5,
        "rtn-needs-a-return-commitment,col-needs-a-named-collaborator": 5,
        "mor-needs-the-moratorium-kept": 5,
        "gs-requester-outside-the-regions": 5,  # no region recorded: outside every one
    }
    assert e["eligible_count"] == 25 + 5 + 5  # A, T (until tomorrow), E
    assert e["obligations"] == {}
    # The same diseases as a list field.
    same = _file(client, pipeline, world["all"], "ai.training", duo_category="DS:c341,DS:C50.9")
    assert _evaluation(same)["excluded_by_reason"] == e["excluded_by_reason"]
    for bad in ("ai.training,HMB,DS:C34", "ai.training,DS:C34,DS:SNOMED:1"):
        assert _file(client, pipeline, world["all"], bad).status_code == 422, bad

    # The requester's region, set by an admin: GS:EU serves a principal in France.
    me = client.get("/v1/principals/me", headers=auth(pipeline)).json()
    assert me["region"] is None
    url = f"/v1/principals/{me['id']}/region"
    for wrong in ("France", "F1", "fra"):
        assert client.put(url, json={"region": wrong}, headers=auth(admin)).status_code == 422
    assert client.put(url, json={"region": "fr"}, headers=auth(admin)).json()["region"] == "FR"

    stated = {
        "publication_commitment": True,
        "return_of_results": True,
        "collaborator": "Dr Ada Byron, thoracic oncology",
    }
    early = _file(
        client, pipeline, world["all"], DISEASES, no_publication_before="2027-01-01", **stated
    )
    assert _evaluation(early)["excluded_by_reason"] == {
        "no-permit": 10,
        "consent-denies-purpose": 5,
        "mor-needs-the-moratorium-kept": 5,  # committing to a date before the moratorium's
    }
    r = _file(
        client, pipeline, world["all"], DISEASES, no_publication_before="2027-07-01", **stated
    )
    e = _evaluation(r)
    assert e["excluded_by_reason"] == {"no-permit": 10, "consent-denies-purpose": 5}
    assert e["eligible_count"] == 25 + 5 * 6
    assert e["obligations"] == {
        "publication": True,
        "return_of_results": True,
        "collaborator": "Dr Ada Byron, thoracic oncology",
        "no_publication_before": "2027-07-01",
    }
    assert r.json()["conditions"]["no_publication_before"] == "2027-07-01"

    # Granted: the obligations are claims of the signed grant.
    approved = client.post(
        f"/v1/access-requests/{r.json()['id']}/approve",
        json={"comment": "conditions stated"},
        headers=auth(steward),
    ).json()
    claims = verify(
        approved["grant"],
        keys_from_jwks(client.get("/.well-known/jwks.json").json()),
        typ=GRANT_TYP,
    )
    assert claims["purpose"] == "ai.training,DS:ICD10CM:C34.1,DS:ICD10CM:C50.9"
    assert claims["obligations"] == e["obligations"]

    # Release re-checks consent now: two days on, the TS consents have ended.
    later = datetime.now(UTC) + timedelta(days=2)
    monkeypatch.setattr(release, "utcnow", lambda: later)
    manifest = client.get(
        f"/v1/grants/{approved['grant_id']}/manifest",
        headers={**auth(pipeline), "Ledger-Grant": approved["grant"]},
        params={"limit": 1000},
    )
    assert manifest.status_code == 200, manifest.text
    items = manifest.json()["items"]
    assert len(items) == 55
    assert sum(not i["available"] for i in items) == 5  # the T subjects' images
    assert {tuple(i["policy_ids"]) for i in items if not i["available"]} == {("no-permit",)}
    ended = next(i["sop_instance_uid"] for i in items if not i["available"])
    refused = client.get(
        f"/v1/grants/{approved['grant_id']}/instances/{ended}",
        headers={**auth(pipeline), "Ledger-Grant": approved["grant"]},
    )
    assert refused.status_code == 410, refused.text
    assert refused.json()["type"].endswith("no-longer-eligible")


def _subject(client: TestClient, registrar: str, patient: str) -> str:
    r = client.post(
        "/v1/subjects",
        json={"issuer": ISSUER, "patient_id": patient},
        headers=auth(registrar),
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def test_valued_modifiers_are_validated_and_ts_ends_a_consent(
    client: TestClient, make_principal: MakePrincipal
) -> None:
    registrar = make_principal(Role.registrar)
    subject = _subject(client, registrar, "TS-1")

    def consent(modifiers: list[str], valid_from: datetime | None = None) -> Any:
        body: dict[str, Any] = {
            "subject_id": subject,
            "decision": "permit",
            "purposes": ["ai"],
            "modifiers": modifiers,
        }
        if valid_from is not None:
            body["valid_from"] = valid_from.isoformat()
        return client.post("/v1/consents", json=body, headers=auth(registrar))

    for bad in (
        ["MOR"],
        ["MOR:30/06/2027"],
        ["TS:13X"],
        ["TS:0M"],
        ["TS:2027-02-30"],
        ["GS:Europe"],
        ["GS"],
        ["NCU:1"],
        ["US"],
        ["PS:lung screening"],
        ["IS:CHU;LYON"],
    ):
        r = consent(bad)
        assert r.status_code == 422, (bad, r.text)
    r = consent(["gs:fr", "GS:EU", "ts:12m", "mor:2027-06-30"])
    assert r.status_code == 201, r.text
    assert r.json()["modifiers"] == ["GS:EU", "GS:FR", "MOR:2027-06-30", "TS:12M"]

    # Months from the consent's start: a consent given two months ago for one month has
    # ended; one given for twelve has not.
    ended, running = _subject(client, registrar, "TS-2"), _subject(client, registrar, "TS-3")
    two_months_ago = datetime.now(UTC) - timedelta(days=62)
    for who, months in ((ended, "TS:1M"), (running, "TS:12M")):
        r = client.post(
            "/v1/consents",
            json={
                "subject_id": who,
                "decision": "permit",
                "purposes": ["ai.training"],
                "modifiers": [months],
                "valid_from": two_months_ago.isoformat(),
            },
            headers=auth(registrar),
        )
        assert r.status_code == 201, r.text

    def permitted(who: str, **when: str) -> bool:
        r = client.get(
            f"/v1/subjects/{who}/permissions",
            params={"purpose": "ai.training", **when},
            headers=auth(registrar),
        )
        assert r.status_code == 200, r.text
        return bool(r.json()["permitted"])

    assert not permitted(ended)
    assert permitted(running)


def test_lists_genetic_studies_research_specific_and_clinical_care(
    client: TestClient, engine: Engine, settings: Settings, make_principal: MakePrincipal
) -> None:
    """US/IS/PS lists refuse everyone not listed; GSO serves only a genetic study; RS needs
    a steward; CC opens ai.inference to a request naming clinical care."""
    pipeline, admin = make_principal(Role.pipeline), make_principal(Role.admin)
    me = client.get("/v1/principals/me", headers=auth(pipeline)).json()

    def rows(prefix: str, purposes: str, modifiers: str) -> list[str]:
        return [f"{ISSUER},{prefix}{i:03d},permit,{purposes},{modifiers}\n" for i in range(5)]

    out = [f"{ISSUER},A{i:03d},permit,ai,\n" for i in range(25)]
    out += rows("U", "ai", f"US:{me['id']};US:00000000-0000-0000-0000-000000000000")
    out += rows("V", "ai", "US:00000000-0000-0000-0000-000000000000")
    out += rows("I", "ai", "IS:CHU-LYON;IS:UMC-UTRECHT")
    out += rows("S", "ai", "PS:LUNG-1;PS:LUNG-2")
    out += rows("Q", "ai", "GSO")
    out += rows("R", "ai", "RS")
    out += rows("K", "HMB", "CC")
    world = _population(engine, settings, out)

    r = _file(client, pipeline, world["all"], "ai.training,HMB")
    e = _evaluation(r)
    assert e["excluded_by_reason"] == {
        "us-requester-not-listed": 5,
        "is-institution-not-listed": 5,
        "ps-project-not-listed": 5,
        "gso-needs-a-genetic-study": 5,
        "no-permit": 5,  # K: a research consent with CC, not clinical inference
    }
    assert e["eligible_count"] == 25 + 5 + 5  # A, U (lists this pipeline), R
    assert any("research-specific restrictions (RS)" in x for x in e["request_reasons"])

    url = f"/v1/principals/{me['id']}/institution"
    assert client.put(url, json={"institution": "CHU LYON"}, headers=auth(admin)).status_code == 422
    done = client.put(url, json={"institution": "chu-lyon"}, headers=auth(admin))
    assert done.json()["institution"] == "CHU-LYON"
    assert _file(client, pipeline, world["all"], "ai.training", project="a b").status_code == 422
    r = _file(
        client, pipeline, world["all"], "ai.training,HMB", project="lung-2", genetic_study=True
    )
    e = _evaluation(r)
    assert e["excluded_by_reason"] == {"us-requester-not-listed": 5, "no-permit": 5}
    assert r.json()["conditions"] == {"project": "LUNG-2", "genetic_study": True}

    # Clinical care: CC opens inference for a patient's care, within HMB.
    care = _file(client, pipeline, world["all"], "ai.inference,HMB", clinical_care=True)
    assert "no-permit" not in _evaluation(care)["excluded_by_reason"]
    research = _file(client, pipeline, world["all"], "ai.inference,HMB")
    assert _evaluation(research)["excluded_by_reason"]["no-permit"] == 5
    # Codes too long for the stored columns are refused, not cut or a 500.
    long = "DS:MONDO:" + "1" * 60
    assert _file(client, pipeline, world["all"], long).status_code == 422


def test_the_sdk_states_a_requests_conditions(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    """``LedgerClient.request_access`` sends the conditions PUB/RTN/COL/MOR consents ask
    for by their API names (a date as ISO 8601), and a misspelt one is the API's 422."""
    from datetime import date

    from ledger.client import LedgerAPIError
    from tests.access.test_release import sdk

    pipeline = sdk(client, make_principal(Role.pipeline))
    plain = pipeline.request_access(world["all"], "ai.training", "Lung nodule detection model.")
    stated = pipeline.request_access(
        world["all"],
        "ai.training",
        "Lung nodule detection model.",
        publication_commitment=True,
        return_of_results=True,
        collaborator="Dr Study Team",
        no_publication_before=date(2027, 7, 1),
    )
    assert stated["conditions"] == {
        "publication": True,
        "return_of_results": True,
        "collaborator": "Dr Study Team",
        "no_publication_before": "2027-07-01",
    }
    assert stated["evaluation"]["eligible_count"] == plain["evaluation"]["eligible_count"] + 15
    with pytest.raises(LedgerAPIError) as refused:
        pipeline.request_access(
            world["all"], "ai.training", "Lung nodule detection model.", publication=True
        )
    assert refused.value.status == 422
