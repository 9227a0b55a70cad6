"""Disease qualifiers: normalised CURIEs, the ICD-10-CM and OBO hierarchies, and the
refusal that a narrower disease must not step around (issue 23)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ledger.consent import diseases, facts
from ledger.consent.facts import ConsentFact, ScopeFact, decide
from ledger.consent.purposes import Purpose, tree
from ledger.errors import InvalidInput
from ledger.principals.models import Role
from tests.conftest import MakePrincipal, auth

OBO = """format-version: 1.2
ontology: mondo-mini

[Term]
id: MONDO:0000001
name: disease

[Term]
id: MONDO:0004992
name: cancer
is_a: MONDO:0000001 ! disease

[Term]
id: MONDO:0008903
name: lung cancer
is_a: MONDO:0004992 ! cancer

[Term]
id: MONDO:0004979
name: asthma
is_a: MONDO:0000001 ! disease

[Typedef]
id: part_of
is_a: MONDO:0004992
"""


def _clear() -> None:
    diseases.clear_caches()
    facts.permit_covers.cache_clear()
    facts.deny_matches.cache_clear()
    facts.legacy_covers.cache_clear()


@pytest.fixture
def ontology(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "mini.obo"
    path.write_text(OBO)
    monkeypatch.setenv(diseases.ONTOLOGY_ENV, str(path))
    _clear()
    yield path
    monkeypatch.delenv(diseases.ONTOLOGY_ENV)
    _clear()


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    _clear()
    yield
    _clear()


def fact(decision: str, *purposes: str, n: int = 0) -> ConsentFact:
    clean = tuple(tree().validate(p) for p in purposes)
    return ConsentFact(
        f"c{n}", 1, "s", decision, clean, (), ScopeFact(), hash((decision, clean, n))
    )


def permitted(items: list[ConsentFact], purpose: str) -> bool:
    return decide(items, Purpose.parse(purpose)).permitted


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("C34.1", "ICD10CM:C34.1"),
        ("c34.1", "ICD10CM:C34.1"),
        ("C341", "ICD10CM:C34.1"),
        ("icd10cm:c34", "ICD10CM:C34"),
        ("ICD10CM:C34.1", "ICD10CM:C34.1"),
        ("MONDO_0004992", "MONDO:0004992"),
        ("mondo:0004992", "MONDO:0004992"),
        ("DOID:1612", "DOID:1612"),
        ("doid_1612", "DOID:1612"),
    ],
)
def test_qualifiers_are_normalised(given: str, canonical: str) -> None:
    assert diseases.normalise(given) == canonical
    assert tree().validate(f"DS:{given}") == f"DS:{canonical}"
    assert Purpose.parse(f"ai.training,DS:{given}").duo == (f"DS:{canonical}",)


@pytest.mark.parametrize("bad", ["SNOMED:254637007", "HP:0000001", "lung cancer", "x"])
def test_an_unknown_code_system_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        tree().validate(f"DS:{bad}")


def test_icd10cm_hierarchy() -> None:
    assert diseases.permit_covers("C34", "C34.1")
    assert diseases.permit_covers("ICD10CM:C30-C39", "c34.11")
    assert not diseases.permit_covers("C34.1", "C34")
    assert not diseases.permit_covers("C34", "C50")
    assert diseases.deny_matches("C34", "C34.1")
    assert diseases.deny_matches("C34.1", "C34")
    assert not diseases.deny_matches("C34", "C50.1")


def test_refusal_of_an_ancestor_disease_is_not_stepped_around_icd() -> None:
    items = [fact("permit", "ai.training", "HMB"), fact("deny", "DS:C34", n=1)]
    for request in ("ai.training,DS:C34.1", "ai.training,DS:c341", "ai.training,DS:ICD10CM:C34.11"):
        assert not permitted(items, request), request
    assert not permitted(items, "ai.training,HMB")  # the broader category still overlaps
    assert permitted(items, "ai.training,DS:C50")
    # A narrower refusal is matched by a broader request too.
    narrow = [fact("permit", "ai.training", "HMB"), fact("deny", "DS:C34.1", n=1)]
    assert not permitted(narrow, "ai.training,DS:C34")


def test_refusal_without_a_known_hierarchy_fails_closed() -> None:
    # No ontology file: a MONDO refusal matches every disease request.
    items = [fact("permit", "ai.training", "HMB"), fact("deny", "DS:MONDO_0004992", n=1)]
    assert not permitted(items, "ai.training,DS:MONDO:0008903")
    assert not permitted(items, "ai.training,DS:C50")  # across systems
    assert not permitted(items, "ai.training,DS:mondo_0004992")
    # ... and a MONDO permit covers only the same code.
    only = [fact("permit", "ai.training", "DS:MONDO:0004992")]
    assert permitted(only, "ai.training,DS:MONDO_0004992")
    assert not permitted(only, "ai.training,DS:MONDO:0008903")


def test_refusal_of_an_ancestor_disease_with_an_ontology(ontology: Path) -> None:
    items = [fact("permit", "ai.training", "HMB"), fact("deny", "DS:MONDO_0004992", n=1)]
    assert not permitted(items, "ai.training,DS:MONDO:0008903")
    assert not permitted(items, "ai.training,DS:MONDO:0000001")
    assert permitted(items, "ai.training,DS:MONDO:0004979")  # asthma: unrelated
    assert not permitted(items, "ai.training,DS:C34")  # across systems: fail closed
    cancer = [fact("permit", "ai.training", "DS:MONDO:0004992")]
    assert permitted(cancer, "ai.training,DS:MONDO:0008903")  # DUOS: the ancestor covers
    assert not permitted(cancer, "ai.training,DS:MONDO:0000001")
    assert not permitted(cancer, "ai.training,DS:MONDO:0004979")
    assert not permitted(cancer, "ai.training,DS:DOID:162")


@pytest.fixture
def registrar(make_principal: MakePrincipal) -> dict[str, str]:
    return auth(make_principal(Role.registrar))


def test_refusal_bypass_regression_through_the_api(
    client: TestClient, registrar: dict[str, str]
) -> None:
    r = client.post(
        "/v1/subjects", json={"issuer": "urn:h", "patient_id": "DS-1"}, headers=registrar
    )
    sid = r.json()["id"]
    for body in (
        {"decision": "permit", "purposes": ["ai.training", "HMB"]},
        {"decision": "deny", "purposes": ["DS:c34"]},
        {"decision": "deny", "purposes": ["DS:MONDO_0004992"]},
    ):
        made = client.post("/v1/consents", json={"subject_id": sid, **body}, headers=registrar)
        assert made.status_code == 201, made.text
    assert made.json()["purposes"] == ["DS:MONDO:0004992"]

    def allowed(purpose: str) -> bool:
        r = client.get(
            f"/v1/subjects/{sid}/permissions", params={"purpose": purpose}, headers=registrar
        )
        assert r.status_code == 200, r.text
        return bool(r.json()["permitted"])

    assert not allowed("ai.training,DS:C34.1")
    assert not allowed("ai.training,DS:MONDO_0008903")
    assert not allowed("ai.training,HMB")
    refused = client.post(
        "/v1/consents",
        json={"subject_id": sid, "decision": "deny", "purposes": ["DS:SNOMED:1"]},
        headers=registrar,
    )
    assert refused.status_code == 422
