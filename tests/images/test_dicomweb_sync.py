"""``ledger images sync --dicomweb`` against a real Orthanc (Debian's, with its DICOMweb
plugin): pull, re-run incrementally, filter, and survive an interruption."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from ledger.cli import app
from ledger.config import Settings
from ledger.db import snapshot
from ledger.images import service, synthetic
from ledger.images.models import Image
from tests.orthanc import PASSWORD, USER, Orthanc

runner = CliRunner()


def study(
    patient: str, uid: str, n: int, *, modality: str = "CT", day: date = date(2024, 3, 1)
) -> list[bytes]:
    rng = random.Random(uid)
    return [
        synthetic.instance(
            patient_id=patient,
            issuer="urn:pacs",
            modality=modality,
            body_part="CHEST",
            study_date=day,
            study_uid=uid,
            series_uid=f"{uid}.1",
            number=i + 1,
            rng=rng,
        )
        for i in range(n)
    ]


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[Orthanc]:
    orthanc = Orthanc(tmp_path / "orthanc").start()
    try:
        yield orthanc
    finally:
        orthanc.stop()


def _sync(settings: Settings, pacs: Orthanc, tmp_path: Path, *extra: str) -> tuple[int, Any]:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    r = runner.invoke(
        app,
        [
            "images",
            "sync",
            "--dicomweb",
            pacs.dicomweb,
            "--user",
            USER,
            "--password-file",
            str(secret),
            *extra,
            "--json",
            "--home",
            str(settings.home),
        ],
        env={"LEDGER_DATABASE_URL": settings.resolved_database_url},
    )
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, json.loads(r.stdout) if r.stdout.strip() else None


def _count(engine: Engine) -> int:
    with snapshot(engine) as session:
        return int(session.execute(select(func.count()).select_from(Image)).scalar_one())


def test_sync_pulls_then_fetches_only_what_is_new(
    settings: Settings, engine: Engine, pacs: Orthanc, tmp_path: Path
) -> None:
    pacs.upload(study("A", "1.2.826.0.9.1", 3) + study("B", "1.2.826.0.9.2", 2))
    code, report = _sync(settings, pacs, tmp_path)
    assert code == 0, report
    assert (report["studies"], report["fetched"], report["stored"]) == (2, 5, 5)
    assert _count(engine) == 5

    code, again = _sync(settings, pacs, tmp_path)
    assert (again["studies_unchanged"], again["fetched"]) == (2, 0)

    # New instances in a known study and a new study: only those are fetched.
    more = study("A", "1.2.826.0.9.1", 5)[3:] + study("C", "1.2.826.0.9.3", 1, modality="MR")
    pacs.upload(more)
    code, third = _sync(settings, pacs, tmp_path)
    assert code == 0, third
    assert (third["studies_unchanged"], third["fetched"], third["stored"]) == (1, 3, 3)
    assert third["already_indexed"] == 3
    assert _count(engine) == 8
    state = list((settings.home / "sync").glob("*.json"))
    assert len(state) == 1
    assert "1.2.826.0.9.3" in state[0].read_text()


def test_sync_filters_by_modality_and_study_date(
    settings: Settings, engine: Engine, pacs: Orthanc, tmp_path: Path
) -> None:
    pacs.upload(
        study("A", "1.2.826.0.8.1", 2, day=date(2020, 1, 1))
        + study("B", "1.2.826.0.8.2", 1, day=date(2025, 1, 1))
        + study("C", "1.2.826.0.8.3", 1, modality="MR", day=date(2025, 2, 1))
    )
    _, report = _sync(settings, pacs, tmp_path, "--modality", "MR")
    assert (report["studies"], report["stored"]) == (1, 1)
    _, report = _sync(settings, pacs, tmp_path, "--study-date-from", "2024-06-01")
    assert (report["studies"], report["stored"]) == (2, 1)  # C is already in
    assert _count(engine) == 2


def test_a_refused_instance_is_reported_and_not_fetched_again(
    settings: Settings, engine: Engine, pacs: Orthanc, tmp_path: Path
) -> None:
    import io

    import pydicom

    good = study("A", "1.2.826.0.7.1", 1)
    ds = pydicom.dcmread(io.BytesIO(study("B", "1.2.826.0.7.2", 1)[0]))
    del ds.PatientID  # ingest refuses a file without a patient
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    pacs.upload([*good, buffer.getvalue()])
    code, report = _sync(settings, pacs, tmp_path)
    assert code == 1
    assert report["stored"] == 1
    assert len(report["failed"]) == 1
    code, again = _sync(settings, pacs, tmp_path)
    assert (code, again["fetched"]) == (0, 0)


def test_an_interrupted_sync_leaves_no_partial_instance_and_resumes(
    settings: Settings,
    engine: Engine,
    pacs: Orthanc,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pacs.upload(study("A", "1.2.826.0.6.1", 4))
    real, calls = service.ingest, [0]

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        done = real(*args, **kwargs)
        if calls[0] == 3:  # stored and indexed, not yet committed: Ctrl-C
            raise KeyboardInterrupt
        return done

    monkeypatch.setattr(service, "ingest", interrupted)
    code, _ = _sync(settings, pacs, tmp_path)
    assert code != 0
    assert _count(engine) == 2
    monkeypatch.setattr(service, "ingest", real)
    code, report = _sync(settings, pacs, tmp_path)
    assert code == 0, report
    assert (report["already_indexed"], report["stored"]) == (2, 2)
    assert _count(engine) == 4
