"""Release over DICOMweb, driven by dicomweb-client (PyPI) against the app served on a
loopback port: search and retrieve a whole grant, check de-identification, withdraw a
subject, and find that subject's instances gone."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlmodel import col

from ledger.access.models import GrantImage
from ledger.client import LedgerAPIError
from ledger.config import Settings
from ledger.db import snapshot
from ledger.principals.models import Role
from ledger.provenance.models import LogEntry
from ledger.server import create_app
from tests.access.test_release import _approved_grant, _subject_of, _uids_of, _withdraw_all
from tests.conftest import MakePrincipal, auth
from tests.threaded import serve

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STUDY, SERIES, SOP = "0020000D", "0020000E", "00080018"


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    with serve(create_app(settings)) as url:
        yield url


def dicomweb(url: str, grant_id: str, key: str, token: str | None) -> DICOMwebClient:
    session = requests.Session()
    session.headers.update(auth(key))
    if token is not None:
        session.headers["Ledger-Grant"] = token
    return DICOMwebClient(url=f"{url}/v1/grants/{grant_id}/dicomweb", session=session)


def _value(item: dict[str, Any], tag: str) -> Any:
    return item[tag]["Value"][0]


def _entries(engine: Engine, kind: str) -> list[LogEntry]:
    with snapshot(engine) as session:
        return list(
            session.execute(select(LogEntry).where(col(LogEntry.event_type) == kind)).scalars()
        )


def test_search_and_retrieve_a_whole_grant_then_a_withdrawal(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
    served: str,
) -> None:
    _, key, grant = _approved_grant(client, world, make_principal)
    with snapshot(engine) as session:
        manifest = set(
            session.execute(
                select(col(GrantImage.deid_uid)).where(col(GrantImage.grant_id) == grant.id)
            ).scalars()
        )
    web = dicomweb(served, grant.id, key, grant.token)

    studies = web.search_for_studies()
    # One study per patient, one instance each.
    assert len(studies) == len(manifest) == 34
    released: dict[str, str] = {}
    for study in studies:
        uid = _value(study, STUDY)
        assert uid.startswith("2.25.")
        files = web.retrieve_study(uid)
        assert len(files) == int(_value(study, "00201208"))
        for ds in files:
            assert ds.StudyInstanceUID == uid
            assert ds.SOPInstanceUID in manifest
            assert ds.PatientID.startswith("ANON-")
            assert ds.PatientIdentityRemoved == "YES"
            assert "SYNTHETIC" not in str(ds.PatientName)
            assert not str(ds.SeriesInstanceUID).startswith("1.2.3")
            released[ds.SOPInstanceUID] = uid
    assert len(released) == 34

    # Series and instances, and one instance by itself.
    first = _value(studies[0], STUDY)
    (series,) = web.search_for_series(first)
    series_uid = _value(series, SERIES)
    (instance,) = web.search_for_instances(first, series_uid)
    sop = _value(instance, SOP)
    assert released[sop] == first
    one = web.retrieve_instance(first, series_uid, sop)
    assert one.SOPInstanceUID == sop
    assert (
        web.search_for_studies(search_filters={"StudyInstanceUID": first})[0][STUDY]
        == (studies[0][STUDY])
    )
    assert len(web.search_for_studies(limit=5)) == 5
    release_entries = len(_entries(engine, "release.instances"))
    assert release_entries >= 34

    # A patient withdraws: the next search leaves their study out (with a Warning) and a
    # retrieval of it is refused (410), and logged.
    registrar = make_principal(Role.registrar)
    withdrawn = _subject_of(client, registrar, "P005")
    (gone_uid,) = _uids_of(engine, grant.id, withdrawn)
    gone_study = released[gone_uid]
    _withdraw_all(client, registrar, withdrawn)

    after = web.search_for_studies()
    assert len(after) == 33
    assert gone_study not in {_value(s, STUDY) for s in after}
    raw = requests.get(
        f"{served}/v1/grants/{grant.id}/dicomweb/studies",
        headers={**auth(key), "Ledger-Grant": grant.token},
        timeout=30,
    )
    assert "no longer eligible" in raw.headers["warning"]
    with pytest.raises(requests.HTTPError) as refused:
        web.retrieve_study(gone_study)
    assert refused.value.response.status_code == 410
    assert refused.value.response.headers["content-type"].startswith("application/problem+json")
    with pytest.raises(requests.HTTPError) as refused_one:
        web.retrieve_instance(gone_study, series_uid, gone_uid)
    assert refused_one.value.response.status_code in (404, 410)
    assert len(_entries(engine, "refusal.release")) >= 2
    everything: set[str] = set()
    for study in after:
        everything |= {ds.SOPInstanceUID for ds in web.retrieve_study(_value(study, STUDY))}
    assert gone_uid not in everything
    assert len(everything) == 33


def test_every_release_check_applies(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
    served: str,
) -> None:
    _, key, grant = _approved_grant(client, world, make_principal)
    study = _value(dicomweb(served, grant.id, key, grant.token).search_for_studies()[0], STUDY)

    def status(web: DICOMwebClient) -> int:
        with pytest.raises(requests.HTTPError) as refused:
            web.retrieve_study(study)
        return int(refused.value.response.status_code)

    assert status(dicomweb(served, grant.id, key, None)) == 401  # no grant header
    assert status(dicomweb(served, grant.id, key, grant.token[:-4] + "AAAA")) == 403  # forged
    other = make_principal(Role.pipeline)
    assert status(dicomweb(served, grant.id, other, grant.token)) == 403  # not their grant
    assert status(dicomweb(served, grant.id, make_principal(Role.curator), grant.token)) == 403
    with pytest.raises(requests.HTTPError) as missing:
        dicomweb(served, grant.id, key, grant.token).retrieve_study("2.25.1")
    assert missing.value.response.status_code == 404
    steward = make_principal(Role.steward)
    revoked = client.post(
        f"/v1/grants/{grant.id}/revoke", headers=auth(steward), json={"reason": "ended"}
    )
    assert revoked.status_code == 200
    assert status(dicomweb(served, grant.id, key, grant.token)) == 410
    with pytest.raises(requests.HTTPError) as searched:
        dicomweb(served, grant.id, key, grant.token).search_for_studies()
    assert searched.value.response.status_code == 410
    assert len(_entries(engine, "refusal.release")) >= 5


def test_a_get_that_releases_logs_the_release(
    client: TestClient, engine: Engine, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    """GETs run in read-only transactions, rolled back; the release GETs commit theirs."""
    _, key, grant = _approved_grant(client, world, make_principal)
    with snapshot(engine) as session:
        uid = (
            session.execute(
                select(col(GrantImage.deid_uid)).where(col(GrantImage.grant_id) == grant.id)
            )
            .scalars()
            .first()
        )
    r = client.get(
        f"/v1/grants/{grant.id}/instances/{uid}",
        headers={**auth(key), "Ledger-Grant": grant.token},
    )
    assert r.status_code == 200, r.text
    assert len(_entries(engine, "release.instances")) == 1


def test_the_sdk_searches_and_retrieves_under_a_grant(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    pipeline, _, grant = _approved_grant(client, world, make_principal)
    studies = pipeline.search_studies(grant)
    assert len(studies) == 34
    uid = _value(studies[0], STUDY)
    (data,) = pipeline.retrieve_study(grant, uid)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.StudyInstanceUID == uid
    assert ds.PatientIdentityRemoved == "YES"
    assert pipeline.search_studies(grant, StudyInstanceUID=uid)[0][STUDY]["Value"] == [uid]
    assert pipeline.dicomweb_url(grant).endswith(f"/v1/grants/{grant.id}/dicomweb")
    with pytest.raises(LedgerAPIError) as missing:
        pipeline.retrieve_study(grant, "2.25.1")
    assert missing.value.status == 404
