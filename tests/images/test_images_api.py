"""Image ingest, encrypted storage, datasets and erasure through the API."""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.encaps import encapsulate
from sqlalchemy import Engine, func, select

from ledger.config import Settings
from ledger.consent.models import Subject
from ledger.db import snapshot, transaction
from ledger.images.models import Image
from ledger.images.store import FilesystemStore, data_key, unseal
from ledger.keystore import load_keyring
from ledger.principals.models import Role
from ledger.provenance import checkpoints
from ledger.provenance.integrity import verify_database
from ledger.provenance.merkle import root_hash
from ledger.provenance.models import LogEntry
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


def _invalid(kind: str) -> bytes:
    """A file that parses as DICOM but holds an attribute ingest must refuse."""
    ds = ct_dataset("MRN-BAD")
    if kind == "birth-date-not-ascii":  # superscript digits: str.isdigit() says yes
        return dicom_bytes(ds).replace(b"19500101", b"\xb9\xb2\xb3\xb20101", 1)
    if kind == "patient-id-swallows-the-file":  # its length field runs to the end
        data = dicom_bytes(ds)
        at = data.index(b"\x10\x00\x20\x00LO")
        return data[: at + 6] + struct.pack("<H", len(data) - at - 8) + data[at + 8 :]
    if kind == "frames-not-a-number":
        ds.NumberOfFrames = 12
        data = dicom_bytes(ds)
        return data.replace(b"\x28\x00\x08\x00IS\x02\x0012", b"\x28\x00\x08\x00IS\x02\x00xx")
    changes = {
        "rows-empty": ("Rows", None),
        "rows-two-values": ("Rows", [64, 64]),
        "columns-zero": ("Columns", 0),
        "no-study-uid": ("StudyInstanceUID", ...),
        "no-series-uid": ("SeriesInstanceUID", ...),
        "no-sop-class": ("SOPClassUID", ...),
        "sop-uid-path": ("SOPInstanceUID", "1.2.3/../../x"),
        "uid-leading-zero": ("SeriesInstanceUID", "1.2.03.4"),
        "uid-too-long": ("StudyInstanceUID", "1." + "2" * 63),
        "patient-id-too-long": ("PatientID", "P" * 65),
        "patient-id-two-values": ("PatientID", ["A", "B"]),
        "name-group-too-long": ("PatientName", "DOE^" + "J" * 70),
        "sex-unknown": ("PatientSex", "X"),
    }
    keyword, value = changes[kind]
    if value is ...:
        delattr(ds, keyword)
    else:
        setattr(ds, keyword, value)
    return dicom_bytes(ds)


def _stored(engine: Engine, settings: Settings) -> tuple[int, int, int, int]:
    """Objects in the store, and image, subject and log rows."""
    objects = sum(1 for p in settings.objects_dir.rglob("*") if p.is_file())
    with snapshot(engine) as session:
        rows = [
            int(session.execute(select(func.count()).select_from(model)).scalar_one())
            for model in (Image, Subject, LogEntry)
        ]
    return objects, rows[0], rows[1], rows[2]


@pytest.mark.parametrize(
    ("kind", "attribute"),
    [
        ("birth-date-not-ascii", "PatientBirthDate"),
        ("patient-id-swallows-the-file", "PatientID"),
        ("rows-empty", "Rows"),
        ("rows-two-values", "Rows"),
        ("columns-zero", "Columns"),
        ("frames-not-a-number", "NumberOfFrames"),
        ("no-study-uid", "StudyInstanceUID"),
        ("no-series-uid", "SeriesInstanceUID"),
        ("no-sop-class", "SOPClassUID"),
        ("sop-uid-path", "SOPInstanceUID"),
        ("uid-leading-zero", "SeriesInstanceUID"),
        ("uid-too-long", "StudyInstanceUID"),
        ("patient-id-too-long", "PatientID"),
        ("patient-id-two-values", "PatientID"),
        ("name-group-too-long", "PatientName"),
        ("sex-unknown", "PatientSex"),
    ],
)
def test_invalid_attributes_are_refused_before_anything_is_stored(
    client: TestClient,
    curator: dict[str, str],
    engine: Engine,
    settings: Settings,
    kind: str,
    attribute: str,
) -> None:
    first = _post(client, curator, dicom_bytes(ct_dataset("MRN-GOOD")))
    assert first.status_code == 201, first.text  # type: ignore[attr-defined]
    before = _stored(engine, settings)
    assert before[:3] == (1, 1, 1)
    r = _post(client, curator, _invalid(kind))
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert attribute in body["detail"]
    assert attribute in [a["keyword"] for a in body["attributes"]]
    assert "MRN-BAD" not in r.text  # type: ignore[attr-defined]  # values are never echoed
    assert _stored(engine, settings) == before
    again = _post(client, curator, _invalid(kind))  # a retry leaves nothing either
    assert again.status_code == 422  # type: ignore[attr-defined]
    assert _stored(engine, settings) == before


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
