"""``ledger doctor``: what a crash leaves in the object store is found, removed on --fix,
and nothing any row refers to is touched; an ingest after a crash replaces the leftover."""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import time
from datetime import date
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import col
from typer.testing import CliRunner

from ledger import wiring
from ledger.cli import app
from ledger.config import Settings
from ledger.db import snapshot, transaction
from ledger.images import datasets, synthetic
from ledger.images import service as images
from ledger.images.models import DatasetColumns
from ledger.images.store import FilesystemStore, data_key, seal, unseal

runner = CliRunner()
ISSUER = "urn:test:hospital"
OLD = time.time() - 7_200


def _doctor(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    r = runner.invoke(
        app,
        ["doctor", *args, "--json", "--home", str(settings.home)],
        env={"LEDGER_DATABASE_URL": settings.resolved_database_url},
    )
    return r.exit_code, json.loads(r.output)


def _dicom(patient: str, n: int = 1) -> bytes:
    return synthetic.instance(
        patient_id=patient,
        issuer=ISSUER,
        modality="CT",
        body_part="CHEST",
        study_date=date(2024, 1, 1),
        study_uid=f"1.2.3.{n}",
        series_uid="1.2.3.4",
        number=n,
        rng=random.Random(n),
    )


def _ingest(engine: Engine, settings: Settings, data: bytes) -> images.Ingested:
    with transaction(engine) as session:
        return images.ingest(
            session,
            wiring.store(settings),
            wiring.keys(settings),
            data,
            default_issuer=ISSUER,
            actor="t",
        )


def _plant(store: FilesystemStore, *, when: float) -> str:
    """An object no row refers to, as a crash between write and commit leaves it."""
    address = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    store.put(address, seal(secrets.token_bytes(32), address, b"a rolled-back ingest"))
    os.utime(store.path(address), (when, when))
    return address


def test_doctor_finds_and_removes_only_what_nothing_refers_to(
    engine: Engine, settings: Settings
) -> None:
    store = FilesystemStore(settings.objects_dir)
    kept = [_ingest(engine, settings, _dicom(f"P{i}", i)).image for i in range(3)]
    with transaction(engine) as session:
        dataset = datasets.create(
            session,
            datasets.DatasetCreate(name="all", image_ids=[i.id for i in kept]),
            actor="t",
            vault=wiring.vault(settings),
        )
    with snapshot(engine) as session:
        columns = session.execute(
            select(col(DatasetColumns.address)).where(col(DatasetColumns.dataset_id) == dataset.id)
        ).scalar_one()
    assert columns is not None
    assert store.exists(columns)
    erased = _ingest(engine, settings, _dicom("GONE", 9)).image
    with transaction(engine) as session:  # the deletions after the commit never run
        assert images.erase_subject(session, erased.subject_id, actor="t") == [erased.sha256]
    orphan = _plant(store, when=OLD)
    fresh = _plant(store, when=time.time())  # may belong to a transaction still running
    partial = store.path("ab" * 32).with_name(f".{'ab' * 32}.0123abcd")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a write")
    os.utime(partial, (OLD, OLD))

    code, report = _doctor(settings)
    assert code == 1  # a dry run with findings
    found = {(f["kind"], f["name"]) for f in report["findings"]}
    assert found == {
        ("unreferenced", orphan),
        ("erased", erased.sha256),
        ("partial", partial.name),
    }
    assert report["recent"] == 1
    assert report["missing"] == []
    assert report["removed"] == 0
    assert report["objects"] == 4 + 1 + 1 + 1 + 1
    assert store.exists(orphan)
    assert partial.exists()

    code, report = _doctor(settings, "--fix")
    assert code == 0, report
    assert report["removed"] == 3
    assert report["clean"]
    assert not store.exists(orphan)
    assert not store.exists(erased.sha256)
    assert not partial.exists()
    assert store.exists(fresh)  # too young to judge
    assert store.exists(columns)
    keys = wiring.keys(settings)
    with snapshot(engine) as session:
        for image in kept:  # every referenced object is still there and still opens
            key = data_key(session, keys.master_key, image.subject_id, create=False)
            assert unseal(key, image.sha256, store.get(image.sha256)).startswith(b"\0" * 128)

    code, report = _doctor(settings, "--fix", "--min-age", "0")
    assert code == 0
    assert [f["name"] for f in report["findings"]] == [fresh]
    assert not store.exists(fresh)
    code, report = _doctor(settings)
    assert (code, report["findings"], report["recent"]) == (0, [], 0)


def test_doctor_reports_an_image_whose_object_is_missing(
    engine: Engine, settings: Settings
) -> None:
    image = _ingest(engine, settings, _dicom("P1")).image
    FilesystemStore(settings.objects_dir).path(image.sha256).unlink()
    code, report = _doctor(settings, "--fix")
    assert code == 1
    assert report["missing"] == [{"image_id": image.id, "sha256": image.sha256}]


def test_an_ingest_after_a_crash_replaces_the_leftover_object(
    engine: Engine, settings: Settings
) -> None:
    """The killed ingest's object was sealed under a data key that rolled back with its
    transaction; the retry must not keep it, or its row would point at unreadable bytes."""
    store = FilesystemStore(settings.objects_dir)
    data = _dicom("NEW")
    address = hashlib.sha256(data).hexdigest()
    store.put(address, seal(secrets.token_bytes(32), address, data))  # the lost key's seal
    image = _ingest(engine, settings, data).image
    with snapshot(engine) as session:
        key = data_key(session, wiring.keys(settings).master_key, image.subject_id, create=False)
    assert unseal(key, address, store.get(address)) == data
