"""STOW-RS: a PACS forwards instances to the ledger in one multipart/related body."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from ledger.config import Settings
from ledger.db import snapshot
from ledger.images import multipart, synthetic
from ledger.images.models import Image
from ledger.images.stow import (
    CANNOT_UNDERSTAND,
    FAILED_SOP_SEQUENCE,
    FAILURE_REASON,
    REFERENCED_SOP_INSTANCE_UID,
    REFERENCED_SOP_SEQUENCE,
)
from ledger.keystore import create_keys
from ledger.principals.models import Role
from ledger.server import create_app
from tests.conftest import MakePrincipal, auth

STOW = "/v1/dicomweb/studies"


def files(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [
        synthetic.instance(
            patient_id=f"S{seed}-{i}",
            issuer="urn:test",
            modality="CT",
            body_part="CHEST",
            study_date=date(2024, 1, 1),
            study_uid=f"1.2.826.0.1.{seed}.{i}",
            series_uid=f"1.2.826.0.1.{seed}.{i}.1",
            number=1,
            rng=rng,
        )
        for i in range(n)
    ]


def body(parts: Iterable[bytes]) -> tuple[bytes, dict[str, str]]:
    boundary = multipart.new_boundary()
    data = b"".join(multipart.frame(parts, boundary))
    return data, {"Content-Type": multipart.content_type(boundary)}


def _count(engine: Engine) -> int:
    with snapshot(engine) as session:
        return int(session.execute(select(func.count()).select_from(Image)).scalar_one())


def _uids(sequence: dict[str, object]) -> list[str]:
    return [item[REFERENCED_SOP_INSTANCE_UID]["Value"][0] for item in sequence["Value"]]  # type: ignore[attr-defined,index]


def test_all_stored_is_200_with_the_referenced_sop_sequence(
    client: TestClient, engine: Engine, make_principal: MakePrincipal
) -> None:
    curator = make_principal(Role.curator)
    sent = files(3)
    data, headers = body(sent)
    r = client.post(STOW, content=data, headers={**headers, **auth(curator)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/dicom+json")
    answer = r.json()
    assert FAILED_SOP_SEQUENCE not in answer
    assert len(_uids(answer[REFERENCED_SOP_SEQUENCE])) == 3
    assert _count(engine) == 3
    # Sent again: the ledger already holds those bytes, so they count as stored.
    again = client.post(STOW, content=data, headers={**headers, **auth(curator)})
    assert again.status_code == 200, again.text
    assert _count(engine) == 3


def test_some_failed_is_202_with_failure_reasons(
    client: TestClient, engine: Engine, make_principal: MakePrincipal
) -> None:
    curator = make_principal(Role.curator)
    good = files(2, seed=1)
    truncated = files(1, seed=2)[0][:-1000]  # pixels cut short
    data, headers = body([good[0], truncated, b"not dicom at all" * 20, good[1]])
    r = client.post(STOW, content=data, headers={**headers, **auth(curator)})
    assert r.status_code == 202, r.text
    answer = r.json()
    assert len(_uids(answer[REFERENCED_SOP_SEQUENCE])) == 2
    failed = answer[FAILED_SOP_SEQUENCE]["Value"]
    assert len(failed) == 2
    assert {f[FAILURE_REASON]["Value"][0] for f in failed} == {CANNOT_UNDERSTAND}
    assert failed[0][REFERENCED_SOP_INSTANCE_UID]["Value"][0]  # the truncated file's UID
    assert "truncated" in r.headers["warning"]
    assert _count(engine) == 2


def test_none_stored_is_409(
    client: TestClient, engine: Engine, make_principal: MakePrincipal
) -> None:
    curator = make_principal(Role.curator)
    data, headers = body([b"x" * 300])
    r = client.post(STOW, content=data, headers={**headers, **auth(curator)})
    assert r.status_code == 409, r.text
    assert r.json()[FAILED_SOP_SEQUENCE]["Value"][0][FAILURE_REASON]["Value"] == [CANNOT_UNDERSTAND]
    assert _count(engine) == 0


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/dicom", 415),
        ('multipart/related; type="application/dicom+xml"; boundary=x', 415),
        ('multipart/related; type="application/dicom"', 422),
    ],
)
def test_a_body_that_is_not_stow_is_refused(
    client: TestClient, make_principal: MakePrincipal, content_type: str, status: int
) -> None:
    curator = make_principal(Role.curator)
    r = client.post(
        STOW,
        content=b"--x\r\n\r\nabc\r\n--x--",
        headers={"Content-Type": content_type, **auth(curator)},
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_only_curators_store(client: TestClient, make_principal: MakePrincipal) -> None:
    data, headers = body(files(1))
    r = client.post(STOW, content=data, headers={**headers, **auth(make_principal(Role.pipeline))})
    assert r.status_code == 403


def test_stow_keeps_the_upload_limit(
    tmp_path: Path, db_url: str, make_principal: MakePrincipal
) -> None:
    home = tmp_path / "small"
    create_keys(home / "keys")
    settings = Settings(
        home=home,
        database_url=db_url,
        checkpoint_interval=0,
        hash_worker=False,
        max_upload_bytes=4096,
    )
    data, headers = body(files(2))
    assert len(data) > 4096
    with TestClient(create_app(settings), raise_server_exceptions=False) as small:
        r = small.post(
            STOW, content=data, headers={**headers, **auth(make_principal(Role.curator))}
        )
    assert r.status_code == 413, r.text


def test_multipart_split_round_trips() -> None:
    parts = [b"a" * 10, b"\r\n--not-the-boundary\r\n", b""]
    boundary = multipart.new_boundary()
    data = b"preamble\r\n" + b"".join(multipart.frame(parts, boundary))
    assert [p.data for p in multipart.split(data, boundary)] == parts
