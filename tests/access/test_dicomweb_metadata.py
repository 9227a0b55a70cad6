"""WADO-RS metadata under a grant (driven by dicomweb-client), and searches that read only
the manifest rows of the studies they answer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ledger.access import dicomweb, grant_manifest
from ledger.config import Settings
from ledger.principals.models import Role
from ledger.server import create_app
from tests.access.test_dicomweb import SERIES, SOP, STUDY, _entries, _value
from tests.access.test_dicomweb import dicomweb as web_client
from tests.access.test_release import _approved_grant, _subject_of, _uids_of, _withdraw_all
from tests.conftest import MakePrincipal, auth
from tests.threaded import serve

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PATIENT_ID, PATIENT_NAME, PIXEL_DATA = "00100020", "00100010", "7FE00010"


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    with serve(create_app(settings)) as url:
        yield url


def _deidentified(item: dict[str, Any]) -> None:
    assert PIXEL_DATA not in item
    assert _value(item, PATIENT_ID).startswith("ANON-")
    assert "SYNTHETIC" not in str(item[PATIENT_NAME])
    assert _value(item, "00120062") == "YES"  # PatientIdentityRemoved
    assert _value(item, STUDY).startswith("2.25.")


def test_metadata_of_a_study_a_series_and_an_instance_then_a_withdrawal(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
    served: str,
) -> None:
    _, key, grant = _approved_grant(client, world, make_principal)
    web = web_client(served, grant.id, key, grant.token)
    study = _value(web.search_for_studies()[0], STUDY)
    logged = len(_entries(engine, "release.instances"))

    (item,) = web.retrieve_study_metadata(study)
    _deidentified(item)
    series, sop = _value(item, SERIES), _value(item, SOP)
    assert web.retrieve_series_metadata(study, series) == [item]
    assert web.retrieve_instance_metadata(study, series, sop) == item
    # The file carries the same attributes.
    assert web.retrieve_instance(study, series, sop).PatientID == _value(item, PATIENT_ID)
    # Each metadata call is a release, logged as one.
    assert len(_entries(engine, "release.instances")) == logged + 4

    # Unknown UIDs are 404; no grant header 401; both logged as refusals.
    with pytest.raises(requests.HTTPError) as missing:
        web.retrieve_study_metadata("2.25.1")
    assert missing.value.response.status_code == 404
    with pytest.raises(requests.HTTPError) as anonymous:
        web_client(served, grant.id, key, None).retrieve_study_metadata(study)
    assert anonymous.value.response.status_code == 401

    # The subject withdraws: their metadata is gone (410), as their files are.
    registrar = make_principal(Role.registrar)
    subject = _subject_of(client, registrar, "P005")
    (gone,) = _uids_of(engine, grant.id, subject)
    released = {
        _value(s, STUDY): s for s in web.search_for_studies(search_filters={"SOPInstanceUID": gone})
    }
    (gone_study,) = released
    _withdraw_all(client, registrar, subject)
    with pytest.raises(requests.HTTPError) as refused:
        web.retrieve_study_metadata(gone_study)
    assert refused.value.response.status_code == 410
    assert refused.value.response.headers["content-type"].startswith("application/problem+json")
    assert len(_entries(engine, "refusal.release")) >= 3


def test_searches_read_only_the_studies_they_answer(
    client: TestClient,
    world: dict[str, str],
    make_principal: MakePrincipal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, key, grant = _approved_grant(client, world, make_principal)
    headers = {**auth(key), "Ledger-Grant": grant.token}
    base = f"/v1/grants/{grant.id}/dicomweb"
    reads: list[int] = []
    index_reads: list[str] = []
    placed, studies = grant_manifest.placed, grant_manifest.studies

    def counting(session: Session, grant_id: str, uids: Sequence[str]) -> Any:
        rows = placed(session, grant_id, uids)
        reads.append(len(rows))
        return rows

    def counting_studies(session: Session, grant_id: str) -> tuple[str, ...]:
        index_reads.append(grant_id)
        return studies(session, grant_id)

    monkeypatch.setattr(dicomweb, "placed", counting)
    monkeypatch.setattr(dicomweb, "studies", counting_studies)
    monkeypatch.setattr(dicomweb, "SEARCH_CHUNK", 5)

    everything = client.get(f"{base}/studies", headers=headers)
    assert everything.status_code == 200, everything.text
    assert len(everything.json()) == 34
    assert sum(reads) == 34  # the whole grant, 5 studies at a time
    assert len(reads) == 7

    # A page of 5 reads the studies up to one past it, not the grant's 34.
    reads.clear()
    page = client.get(f"{base}/studies", params={"limit": 5, "offset": 2}, headers=headers)
    assert [s[STUDY] for s in page.json()] == [s[STUDY] for s in everything.json()[2:7]]
    assert sum(reads) == 10
    assert "offset=7" in page.headers["warning"]

    # Series and instances of a study, and a study by UID, read that study only.
    study = everything.json()[3][STUDY]["Value"][0]
    for path, params in (
        (f"{base}/studies/{study}/series", {}),
        (f"{base}/studies/{study}/instances", {}),
        (f"{base}/studies", {"StudyInstanceUID": study}),
    ):
        reads.clear()
        found = client.get(path, params=params, headers=headers)
        assert found.status_code == 200, found.text
        assert len(found.json()) == 1
        assert reads == [1], path
    series = client.get(f"{base}/studies/{study}/series", headers=headers).json()[0][SERIES]
    reads.clear()
    instances = client.get(
        f"{base}/studies/{study}/series/{series['Value'][0]}/instances", headers=headers
    )
    assert len(instances.json()) == 1
    assert reads == [1]
    # The grant's study list was read once: the frozen manifest's index is kept.
    assert index_reads == [grant.id]
