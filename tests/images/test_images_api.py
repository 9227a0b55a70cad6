"""Image ingest, encrypted storage, datasets and erasure through the API."""

from __future__ import annotations

import io

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.encaps import encapsulate
from sqlalchemy import Engine, func, select

from ledger.config import Settings
from ledger.db import snapshot, transaction
from ledger.images.models import Image
from ledger.images.store import FilesystemStore, data_key, unseal
from ledger.keystore import load_keyring
from ledger.principals.models import Role
from ledger.provenance import checkpoints
from ledger.provenance.integrity import verify_database
from ledger.provenance.merkle import root_hash
from tests.conftest import MakePrincipal, auth
from tests.images.dicom_factory import ct_dataset

DICOM = {"Content-Type": "application/dicom"}


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def curator(make_principal: MakePrincipal) -> dict[str, str]:
    return auth(make_principal(Role.curator))


def _post(client: TestClient, h: dict[str, str], data: bytes) -> object:
    return client.post("/v1/images", content=data, headers={**h, **DICOM})


def _count(engine: Engine) -> int:
    with snapshot(engine) as session:
        return int(session.execute(select(func.count()).select_from(Image)).scalar_one())


def test_ingest_links_subject_encrypts_and_detects_duplicates(
    client: TestClient,
    curator: dict[str, str],
    engine: Engine,
    settings: Settings,
    make_principal: MakePrincipal,
) -> None:
    ds = ct_dataset("MRN-42")
    ds.IssuerOfPatientID = "urn:oid:1.2.3"
    data = dicom_bytes(ds)
    r = _post(client, curator, data)
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert (body["modality"], body["body_part"], body["study_date"]) == (
        "CT",
        "CHEST",
        "2024-03-15",
    )
    registrar = auth(make_principal(Role.registrar))
    subject = client.post(
        "/v1/subjects", json={"issuer": "urn:oid:1.2.3", "patient_id": "MRN-42"}, headers=registrar
    ).json()
    assert subject["id"] == body["subject_id"]
    again = _post(client, curator, data)
    assert again.status_code == 200  # type: ignore[attr-defined]
    assert again.json()["duplicate"] is True  # type: ignore[attr-defined]
    assert _count(engine) == 1
    store = FilesystemStore(settings.objects_dir)
    blob = store.get(body["sha256"])
    assert blob != data
    assert b"DOE" not in blob
    assert oct(store.path(body["sha256"]).stat().st_mode & 0o777) == "0o600"
    keys = load_keyring(settings.keys_dir)
    with transaction(engine) as session:
        key = data_key(session, keys.master_key, body["subject_id"], create=False)
    assert unseal(key, body["sha256"], blob) == data


def test_default_issuer_and_unsupported_transfer_syntax_still_stored(
    client: TestClient, curator: dict[str, str]
) -> None:
    ds = ct_dataset("MRN-43")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"  # JPEG 2000: never decoded
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    r = _post(client, curator, buffer.getvalue())
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    assert r.json()["transfer_syntax"] == "1.2.840.10008.1.2.4.90"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"hello, not dicom" * 20, "not a DICOM"),
        (b"", "too short"),
        (dicom_bytes(ct_dataset())[:-100], "truncated"),
        (dicom_bytes(ct_dataset())[:400], "PatientID"),
        (dicom_bytes(ct_dataset(patient_id="")), "PatientID"),
    ],
)
def test_bad_files_store_nothing(
    client: TestClient,
    curator: dict[str, str],
    engine: Engine,
    settings: Settings,
    data: bytes,
    fragment: str,
) -> None:
    r = _post(client, curator, data)
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    assert fragment in r.json()["detail"]  # type: ignore[attr-defined]
    assert _count(engine) == 0
    assert not any(settings.objects_dir.rglob("*")) if settings.objects_dir.exists() else True


def test_wrong_media_type(client: TestClient, curator: dict[str, str]) -> None:
    r = client.post("/v1/images", content=b"x", headers={**curator, "Content-Type": "image/png"})
    assert r.status_code == 415


def _ingest_many(client: TestClient, h: dict[str, str]) -> list[dict[str, object]]:
    out = []
    for i, (modality, part, day) in enumerate(
        [
            ("CT", "CHEST", "20240101"),
            ("CT", "HEAD", "20240201"),
            ("MR", "HEAD", "20240301"),
            ("CT", "CHEST", "20240401"),
        ]
    ):
        ds = ct_dataset(f"P{i % 2}", modality=modality, body_part=part, seed=i)
        ds.StudyDate = day
        r = _post(client, h, dicom_bytes(ds))
        out.append(r.json())  # type: ignore[attr-defined]
    return out


def test_datasets_by_filter_and_ids_share_identity(
    client: TestClient, curator: dict[str, str]
) -> None:
    images = _ingest_many(client, curator)
    by_filter = client.post(
        "/v1/datasets",
        headers=curator,
        json={"name": "ct-chest", "filter": {"modalities": ["ct"], "body_parts": ["CHEST"]}},
    )
    assert by_filter.status_code == 201, by_filter.text
    chest = [str(i["id"]) for i in images if i["body_part"] == "CHEST"]
    by_ids = client.post(
        "/v1/datasets",
        headers=curator,
        json={"name": "ct-chest-ids", "image_ids": list(reversed(chest))},
    )
    assert by_ids.status_code == 201
    assert by_filter.json()["manifest_root"] == by_ids.json()["manifest_root"]
    assert by_filter.json()["image_count"] == 2
    dated = client.post(
        "/v1/datasets",
        headers=curator,
        json={
            "name": "spring",
            "filter": {"study_date_from": "2024-02-15", "study_date_to": "2024-12-31"},
        },
    )
    assert dated.json()["image_count"] == 2
    manifest = client.get(
        f"/v1/datasets/{by_filter.json()['id']}/manifest", headers=curator, params={"limit": 1}
    ).json()
    assert manifest["next_start"] == 1
    rest = client.get(
        f"/v1/datasets/{by_filter.json()['id']}/manifest", headers=curator, params={"start": 1}
    ).json()
    leaves = [bytes.fromhex(i["leaf_hash"]) for i in manifest["items"] + rest["items"]]
    assert root_hash(leaves).hex() == manifest["manifest_root"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "none", "filter": {"modalities": ["PT"]}}, 422),
        ({"name": "ghost", "image_ids": ["nope"]}, 422),
        ({"name": "both", "image_ids": [], "filter": {}}, 422),
        ({"name": "neither"}, 422),
        (
            {
                "name": "dates",
                "filter": {"study_date_from": "2024-02-01", "study_date_to": "2024-01-01"},
            },
            422,
        ),
    ],
)
def test_bad_datasets(
    client: TestClient, curator: dict[str, str], body: dict[str, object], status: int
) -> None:
    _ingest_many(client, curator)
    r = client.post("/v1/datasets", headers=curator, json=body)
    assert r.status_code == status, r.text


def test_dataset_names_are_unique(client: TestClient, curator: dict[str, str]) -> None:
    _ingest_many(client, curator)
    body = {"name": "all", "filter": {}}
    assert client.post("/v1/datasets", headers=curator, json=body).status_code == 201
    assert client.post("/v1/datasets", headers=curator, json=body).status_code == 409


def test_erasure_shreds_images_and_unlinks_the_log(
    client: TestClient,
    curator: dict[str, str],
    engine: Engine,
    settings: Settings,
    make_principal: MakePrincipal,
) -> None:
    r = _post(client, curator, dicom_bytes(ct_dataset("MRN-ERASE")))
    image = r.json()  # type: ignore[attr-defined]
    keys = load_keyring(settings.keys_dir)
    with transaction(engine) as session:
        checkpoints.create(session, checkpoints.LogTree(), keys, settings.log_origin)
    admin = auth(make_principal(Role.admin))
    done = client.post(f"/v1/subjects/{image['subject_id']}/erase", headers=admin)
    assert done.status_code == 200, done.text
    assert done.json()["images"] == 1
    assert not FilesystemStore(settings.objects_dir).exists(image["sha256"])
    after = client.get(f"/v1/images/{image['id']}", headers=curator).json()
    assert after["erased"] is True
    assert after["sop_instance_uid"] is None
    registrar = auth(make_principal(Role.registrar))
    lookup = client.post(
        "/v1/subjects/lookup",
        json={"issuer": settings.default_issuer, "patient_id": "MRN-ERASE"},
        headers=registrar,
    )
    assert lookup.status_code == 404
    auditor = auth(make_principal(Role.auditor))
    assert (
        client.get(f"/v1/audit/subjects/{image['subject_id']}/lineage", headers=auditor).status_code
        == 410
    )
    with snapshot(engine) as session:
        report = verify_database(
            session, checkpoints.verifiers(keys, settings.log_origin), settings.log_origin
        )
    assert report.ok
    assert (
        client.post(f"/v1/subjects/{image['subject_id']}/erase", headers=admin).status_code == 422
    )
