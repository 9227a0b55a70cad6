"""Release, authorize, withdrawal propagation and model lineage, driven through the SDK
against the real app (and by hand where the SDK would not let a caller misbehave)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlmodel import col

from ledger.access.decision_tokens import DECISION_AUDIENCE, DECISION_TYP
from ledger.access.models import GrantImage
from ledger.access.slots import Slots
from ledger.access.tokens import keys_from_jwks, verify
from ledger.audit import queries as audit
from ledger.client import Grant, LedgerAPIError, LedgerClient
from ledger.clock import utcnow
from ledger.config import Settings
from ledger.db import snapshot, transaction
from ledger.errors import TooManyRequests
from ledger.http.app import flush_decisions, routers
from ledger.images import datasets, synthetic
from ledger.images import service as images
from ledger.images.deid import SECONDARY_CAPTURE
from ledger.images.models import DatasetImage, Image
from ledger.images.store import FilesystemStore, data_key, unseal
from ledger.keystore import load_keyring
from ledger.principals.models import Role
from ledger.provenance.models import LogEntry
from tests.access.test_access_api import ISSUER
from tests.conftest import MakePrincipal, auth


def sdk(client: TestClient, key: str) -> LedgerClient:
    return LedgerClient(str(client.base_url), key, http=client)


def _approved_grant(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> tuple[LedgerClient, str, Grant]:
    pipeline_key, steward = make_principal(Role.pipeline), make_principal(Role.steward)
    pipeline = sdk(client, pipeline_key)
    request = pipeline.request_access(
        world["all"], "ai.training", "Train a nodule detector for lung screening."
    )
    approved = client.post(
        f"/v1/access-requests/{request['id']}/approve",
        headers=auth(steward),
        json={"comment": "ok"},
    )
    assert approved.status_code == 200, approved.text
    return pipeline, pipeline_key, pipeline.wait_for_grant(request["id"], poll=0)


def _subject_of(client: TestClient, registrar: str, patient: str) -> str:
    r = client.post(
        "/v1/subjects", headers=auth(registrar), json={"issuer": ISSUER, "patient_id": patient}
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def _withdraw_all(client: TestClient, registrar: str, subject_id: str) -> None:
    state = client.get(f"/v1/subjects/{subject_id}/consents", headers=auth(registrar)).json()
    for consent in state["consents"]:
        r = client.post(
            f"/v1/consents/{consent['id']}/withdraw",
            headers=auth(registrar),
            json={"reason": "patient asked"},
        )
        assert r.status_code == 200, r.text


def _uids_of(engine: Engine, grant_id: str, subject_id: str) -> list[str]:
    with snapshot(engine) as session:
        return list(
            session.execute(
                select(col(GrantImage.deid_uid))
                .join(Image, col(Image.id) == col(GrantImage.image_id))
                .where(col(GrantImage.grant_id) == grant_id, col(Image.subject_id) == subject_id)
            ).scalars()
        )


def _study_of(engine: Engine, subject_id: str) -> str:
    with snapshot(engine) as session:
        return str(
            session.execute(
                select(col(Image.study_uid)).where(col(Image.subject_id) == subject_id)
            ).scalar_one()
        )


def test_the_whole_story_through_the_sdk(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
    tmp_path: Path,
) -> None:
    start = utcnow() - timedelta(seconds=1)
    pipeline, _, grant = _approved_grant(client, world, make_principal)
    assert grant.claims["image_count"] == 34
    folder = tmp_path / "download"

    report = pipeline.download(grant, folder, batch=10, progress=False)
    files = sorted(folder.glob("*.dcm"))
    assert report.downloaded == len(files) == 34
    for path in files[:5]:
        ds = pydicom.dcmread(path)
        assert ds.PatientID.startswith("ANON-")
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.SOPInstanceUID == path.stem
        assert ds.file_meta.MediaStorageSOPInstanceUID == path.stem
        assert b"P0" not in path.read_bytes()  # no original patient id anywhere
    again = pipeline.download(grant, folder, progress=False)
    assert (again.downloaded, again.already_present) == (0, 34)

    # A patient withdraws: every route refuses their pixels from the next call on.
    registrar = make_principal(Role.registrar)
    withdrawn = _subject_of(client, registrar, "P005")
    (uid,) = _uids_of(engine, grant.id, withdrawn)
    _withdraw_all(client, registrar, withdrawn)
    with pytest.raises(LedgerAPIError) as refused:
        pipeline.instance(grant, uid)
    assert refused.value.status == 410
    assert "consent-permits-purpose" not in refused.value.problem["policy_ids"]
    other = next(p.stem for p in files if p.stem != uid)
    assert pydicom.dcmread(io.BytesIO(pipeline.instance(grant, other))).SOPInstanceUID == other

    manifest = {i["sop_instance_uid"]: i for i in pipeline.manifest(grant)}
    assert manifest[uid]["available"] is False
    assert sum(i["available"] for i in manifest.values()) == 33

    archive = client.post(
        f"/v1/grants/{grant.id}/archive",
        headers={**pipeline._auth, "Ledger-Grant": grant.token},
        json={"sop_instance_uids": [uid, other]},
    )
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert sorted(z.namelist()) == sorted([f"{other}.dcm", "ledger-refused.json"])
        assert uid in z.read("ledger-refused.json").decode()

    resumed = pipeline.download(grant, folder, progress=False)
    assert resumed.removed == [uid]
    assert not (folder / f"{uid}.dcm").exists()

    changes = pipeline.revocations(start)
    assert changes["instances"] == [
        {"grant_id": grant.id, "sop_instance_uids": [uid], "policy_ids": ["no-permit"]}
    ]
    assert changes["grants"] == []

    # Inference: the withdrawn patient's study is denied, another is permitted.
    denied = pipeline.authorize("ai.inference", _study_of(engine, withdrawn))
    assert denied["decision"] == "deny"
    assert denied["token"].count(".") == 2
    kept = _subject_of(client, registrar, "P010")
    assert pipeline.authorize("ai.inference", _study_of(engine, kept))["decision"] == "permit"
    with pytest.raises(LedgerAPIError) as unknown:
        pipeline.authorize("ai.inference", "1.2.3.999999")
    assert unknown.value.status == 404
    with pytest.raises(LedgerAPIError) as bad_purpose:
        pipeline.authorize("ai.astrology", _study_of(engine, kept))
    assert bad_purpose.value.status == 422

    # The model trained on the grant is flagged, and the impact report names it.
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"not really weights")
    model = pipeline.register_model("nodule-detector", "1.0", weights, [grant.id])
    assert model["flagged"] is True
    assert model["grants"][0]["subjects_no_longer_consented"] == 1
    auditor = make_principal(Role.auditor)
    impact = client.get(f"/v1/subjects/{withdrawn}/impact", headers=auth(auditor)).json()
    assert impact["grants"][0]["grant_id"] == grant.id
    assert impact["grants"][0]["images_blocked_now"] == 1
    assert impact["models"] == [model["id"]]
    lineage = client.get(f"/v1/audit/models/{model['id']}/lineage", headers=auth(auditor))
    assert lineage.status_code == 200, lineage.text
    assert {"model.registered", "grant.issued", "request.evaluated"} <= {
        e["type"] for e in lineage.json()["events"]
    }

    # The log shows releases, refusals and decisions; no release lacked consent.
    flush_decisions(client.app.state.ledger)  # the server does this every few seconds
    with snapshot(engine) as session:
        kinds = set(session.execute(select(col(LogEntry.event_type))).scalars())
        violations, checked = audit.releases_without_consent(session)
    assert {"release.instances", "refusal.release", "authorize.decisions"} <= kinds
    assert {"model.registered", "grant.issued"} <= kinds
    assert violations == []
    assert checked > 0


def test_release_refusals(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
) -> None:
    pipeline, key, grant = _approved_grant(client, world, make_principal)
    uid = next(iter(pipeline.manifest(grant)))["sop_instance_uid"]
    url = f"/v1/grants/{grant.id}"

    def get(path: str, headers: dict[str, str]) -> Any:
        return client.get(url + path, headers=headers)

    assert get(f"/instances/{uid}", auth(key)).status_code == 401  # no grant header
    thief = make_principal(Role.pipeline)
    stolen = get(f"/instances/{uid}", {**auth(thief), "Ledger-Grant": grant.token})
    assert stolen.status_code == 403
    head, body, sig = grant.token.split(".")
    altered = f"{head}.{body[:-2]}AA.{sig}"
    assert get(f"/instances/{uid}", {**auth(key), "Ledger-Grant": altered}).status_code == 403
    assert (
        get("/instances/2.25.12345", {**auth(key), "Ledger-Grant": grant.token}).status_code == 404
    )
    steward = make_principal(Role.steward)
    assert client.get(url + "/manifest", headers=auth(steward)).status_code == 403
    too_many = client.post(
        url + "/archive",
        headers={**auth(key), "Ledger-Grant": grant.token},
        json={"sop_instance_uids": [uid] * 257},
    )
    assert too_many.status_code == 422
    revoked = client.post(url + "/revoke", headers=auth(steward), json={"reason": "misuse"})
    assert revoked.status_code == 200, revoked.text
    gone = get(f"/instances/{uid}", {**auth(key), "Ledger-Grant": grant.token})
    assert gone.status_code == 410
    assert gone.headers["content-type"].startswith("application/problem+json")
    assert (
        client.post(url + "/revoke", headers=auth(steward), json={"reason": "x"}).status_code == 409
    )
    listed = pipeline.revocations(utcnow() - timedelta(minutes=5))
    assert [g["grant_id"] for g in listed["grants"]] == [grant.id]
    with snapshot(engine) as session:
        refusals = session.execute(
            select(col(LogEntry.seq)).where(col(LogEntry.event_type) == "refusal.release")
        ).all()
        released = session.execute(
            select(col(LogEntry.seq)).where(col(LogEntry.event_type) == "release.instances")
        ).all()
    assert len(refusals) == 5
    assert released == []


def test_erasure_blocks_every_release_route(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
) -> None:
    pipeline, key, grant = _approved_grant(client, world, make_principal)
    registrar, eraser = make_principal(Role.registrar), make_principal(Role.admin)
    subject = _subject_of(client, registrar, "P007")
    (uid,) = _uids_of(engine, grant.id, subject)
    assert client.post(f"/v1/subjects/{subject}/erase", headers=auth(eraser)).status_code == 200
    headers = {**auth(key), "Ledger-Grant": grant.token}
    assert client.get(f"/v1/grants/{grant.id}/instances/{uid}", headers=headers).status_code == 410
    archive = client.post(
        f"/v1/grants/{grant.id}/archive", headers=headers, json={"sop_instance_uids": [uid]}
    )
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert z.namelist() == ["ledger-refused.json"]
    items = {i["sop_instance_uid"]: i for i in pipeline.manifest(grant)}
    assert items[uid]["available"] is False
    changes = pipeline.revocations(utcnow() - timedelta(minutes=1))
    assert changes["instances"][0]["sop_instance_uids"] == [uid]


def test_download_slots_refuse_beyond_the_limit() -> None:
    slots = Slots(2)
    slots.take("g")
    slots.take("g")
    with pytest.raises(TooManyRequests):
        slots.take("g")
    slots.give("g")
    slots.take("g")
    slots.take("other")


def test_a_withdrawal_turns_a_cached_permit_into_a_deny_at_once(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
) -> None:
    pipeline = sdk(client, make_principal(Role.pipeline))
    registrar = make_principal(Role.registrar)
    subject = _subject_of(client, registrar, "P012")
    study = _study_of(engine, subject)
    first = pipeline.authorize("ai.inference", study)
    assert first["decision"] == "permit"
    assert pipeline.authorize("ai.inference", study)["decision"] == "permit"  # cached
    _withdraw_all(client, registrar, subject)
    after = pipeline.authorize("ai.inference", study)
    assert after["decision"] == "deny"
    assert "no-permit" in after["policy_ids"]
    jwks = client.get("/.well-known/jwks.json").json()
    claims = verify(
        after["token"], keys_from_jwks(jwks), typ=DECISION_TYP, audience=DECISION_AUDIENCE
    )
    assert claims["decision"] == "deny"
    assert claims["study_sha256"] == hashlib.sha256(study.encode()).hexdigest()
    assert study not in json.dumps(claims)  # named by hash only


def _pixels_of(client: TestClient, engine: Engine, subject_id: str) -> bytes:
    """A distinctive run of the subject's original pixel bytes (synthetic noise)."""
    state = client.app.state.ledger  # type: ignore[attr-defined]
    with snapshot(engine) as session:
        address = session.execute(
            select(col(Image.sha256)).where(col(Image.subject_id) == subject_id)
        ).scalar_one()
        key = data_key(session, state.keys.master_key, subject_id, create=False)
    original = unseal(key, address, state.store.get(address))
    pixels = bytes(pydicom.dcmread(io.BytesIO(original)).PixelData)
    return pixels[len(pixels) // 2 : len(pixels) // 2 + 48]


def test_no_withdrawn_pixels_leave_through_any_route(
    client: TestClient,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
) -> None:
    """After a withdrawal, call every readable route of the API as every role, with the
    withdrawn subject's ids and the grant filled in: the subject's pixels appear in no
    response. (Routes that change state are covered by their own tests.)"""
    _, key, grant = _approved_grant(client, world, make_principal)
    registrar = make_principal(Role.registrar)
    subject = _subject_of(client, registrar, "P009")
    (uid,) = _uids_of(engine, grant.id, subject)
    needle = _pixels_of(client, engine, subject)
    headers = {**auth(key), "Ledger-Grant": grant.token}
    before = client.get(f"/v1/grants/{grant.id}/instances/{uid}", headers=headers)
    assert needle in before.content  # the needle is what a release would carry
    _withdraw_all(client, registrar, subject)
    with snapshot(engine) as session:
        image_id = session.execute(
            select(col(Image.id)).where(col(Image.subject_id) == subject)
        ).scalar_one()
    values = {
        "grant_id": grant.id,
        "uid": uid,
        "subject_id": subject,
        "image_id": image_id,
        "dataset_id": world["all"],
        "request_id": str(grant.claims["jti"]),
    }
    keys = {role: make_principal(role) for role in Role}
    keys[Role.pipeline] = key
    calls = 0
    for route in [r for router in routers() for r in router.routes if isinstance(r, APIRoute)]:
        url = re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), "x"), route.path)
        for method in route.methods:
            if method != "GET" and not url.endswith("/archive"):
                continue
            for role_key in keys.values():
                r = client.request(
                    method,
                    url,
                    headers={**auth(role_key), "Ledger-Grant": grant.token},
                    json={"sop_instance_uids": [uid]} if method == "POST" else None,
                )
                calls += 1
                assert needle not in r.content, f"{method} {route.path} leaked pixels"
    assert calls > 100


def test_concurrent_downloads_beyond_the_limit_get_429(
    client: TestClient, world: dict[str, str], make_principal: MakePrincipal
) -> None:
    pipeline, key, grant = _approved_grant(client, world, make_principal)
    uid = next(iter(pipeline.manifest(grant)))["sop_instance_uid"]
    slots = client.app.state.ledger.download_slots  # type: ignore[attr-defined]
    for _ in range(slots.limit):
        slots.take(grant.id)  # downloads still streaming
    busy = client.post(
        f"/v1/grants/{grant.id}/archive",
        headers={**auth(key), "Ledger-Grant": grant.token},
        json={"sop_instance_uids": [uid]},
    )
    assert busy.status_code == 429
    assert busy.headers["content-type"].startswith("application/problem+json")
    slots.give(grant.id)
    ok = client.post(
        f"/v1/grants/{grant.id}/archive",
        headers={**auth(key), "Ledger-Grant": grant.token},
        json={"sop_instance_uids": [uid]},
    )
    assert ok.status_code == 200


def test_a_secondary_capture_that_may_show_text_is_never_released(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    world: dict[str, str],
    make_principal: MakePrincipal,
) -> None:
    """Policy admits it (BurnedInAnnotation is not YES), but de-identification could not
    vouch for its pixels: the release refuses it before anything is decrypted or logged."""
    keys, store = load_keyring(settings.keys_dir), FilesystemStore(settings.objects_dir)
    ds = pydicom.dcmread(
        io.BytesIO(
            synthetic.instance(
                patient_id="P020",
                issuer=ISSUER,
                modality="CT",
                body_part="CHEST",
                study_date=date(2024, 2, 2),
                study_uid="1.2.3.77",
                series_uid="1.2.3.78",
                number=9,
                rng=random.Random(3),
            )
        )
    )
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    del ds.BurnedInAnnotation
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with transaction(engine) as session:
        sc = images.ingest(
            session, store, keys, buffer.getvalue(), default_issuer=ISSUER, actor="t"
        ).image.id
        ids = list(
            session.execute(
                select(col(DatasetImage.image_id)).where(
                    col(DatasetImage.dataset_id) == world["all"]
                )
            ).scalars()
        )
        with_sc = datasets.create(
            session, datasets.DatasetCreate(name="with-sc", image_ids=[*ids, sc]), actor="t"
        ).id
    _, key, grant = _approved_grant(client, {"all": with_sc}, make_principal)
    with snapshot(engine) as session:
        uid = session.execute(
            select(col(GrantImage.deid_uid)).where(
                col(GrantImage.grant_id) == grant.id, col(GrantImage.image_id) == sc
            )
        ).scalar_one()
    headers = {**auth(key), "Ledger-Grant": grant.token}
    single = client.get(f"/v1/grants/{grant.id}/instances/{uid}", headers=headers)
    assert single.status_code == 410
    assert single.json()["policy_ids"] == ["deid-quarantine"]
    archive = client.post(
        f"/v1/grants/{grant.id}/archive", headers=headers, json={"sop_instance_uids": [uid]}
    )
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert z.namelist() == ["ledger-refused.json"]
    assert archive.headers["ledger-released"] == "0"
