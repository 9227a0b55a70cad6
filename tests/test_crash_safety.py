"""`kill -9` of a server in the middle of ingests, a release stream and a CSV import, then a
restart: nothing half-written, the log verifies, `ledger doctor` clears what the store was
left with, every image opens, the grant's download slot is free again."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from ledger import wiring
from ledger.config import Settings
from ledger.consent.models import ConsentVersion
from ledger.db import make_engine, snapshot
from ledger.home import init_home
from ledger.images import synthetic
from ledger.images.models import Image
from ledger.images.store import data_key, unseal
from ledger.provenance.models import LogEntry
from tests.servers import Server, ledger_cli

ISSUER = "urn:test:crash"
COHORT = 24
CSV_ROWS = 50_000
HEADER = "issuer,patient_id,decision,purposes\n"


def _dicom(patient: str, seed: int, size: int = 64) -> bytes:
    return synthetic.instance(
        patient_id=patient,
        issuer=ISSUER,
        modality="CT",
        body_part="CHEST",
        study_date=date(2024, 5, 1),
        study_uid=f"1.2.826.0.1.3680043.10.544.{seed}",
        series_uid=f"1.2.826.0.1.3680043.10.544.{seed}.1",
        number=1,
        rng=random.Random(seed),
        size=size,
    )


def _raw_post(port: int, path: str, key: str, body: bytes, media: str) -> socket.socket:
    """Send a whole request and return the socket unread: the test knows the server has
    the body before it kills it."""
    conn = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {media}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    conn.sendall(head.encode() + body)
    return conn


class Ingester(threading.Thread):
    """Ingests new patients' images one after another until the server dies."""

    def __init__(self, url: str, key: str, n: int) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.n = url, key, n
        self.answered: list[bytes] = []
        self.unanswered: list[bytes] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            for k in range(10_000):
                data = _dicom(f"K{self.n}-{k}", 10_000 * (self.n + 1) + k)
                try:
                    r = http.post(
                        "/v1/images",
                        content=data,
                        headers={
                            "Authorization": f"Bearer {self.key}",
                            "Content-Type": "application/dicom",
                        },
                    )
                except httpx.TransportError:
                    self.unanswered.append(data)
                    return
                assert r.status_code == 201, r.text
                self.answered.append(data)


def test_kill_9_mid_ingest_release_and_import_leaves_nothing_half_written(
    empty_db_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=empty_db_url)
    admin = init_home(settings).admin.api_key
    server = Server(
        home, empty_db_url, tmp_path / "server.log", LEDGER_MAX_CONCURRENT_DOWNLOADS="1"
    )
    try:
        server.start().wait_ready()
        http = httpx.Client(base_url=server.url, timeout=60)
        keys = _setup(http, admin)
        grant_id, token, uids = _grant(http, keys)
        release_headers = {**_auth(keys["pipeline"]), "Ledger-Grant": token}

        ingesters = [Ingester(server.url, keys["curator"], n) for n in range(3)]
        for ingester in ingesters:
            ingester.start()
        # A release stream, open and part read when the server dies.
        stream_cm = http.stream(
            "POST",
            f"/v1/grants/{grant_id}/archive",
            headers=release_headers,
            json={"sop_instance_uids": uids},
        )
        stream = stream_cm.__enter__()
        assert stream.status_code == 200
        chunks = stream.iter_raw(65_536)
        assert next(chunks)
        while not all(i.answered for i in ingesters):  # every ingester is under way
            time.sleep(0.02)
        # A large CSV import, its body sent.
        rows = "".join(f"{ISSUER},C{i:06d},permit,ai\n" for i in range(CSV_ROWS))
        csv = _raw_post(
            server.port,
            "/v1/consents/import",
            keys["registrar"],
            (HEADER + rows).encode(),
            "text/csv",
        )
        time.sleep(2.0)  # past parsing, into the writes: the import takes several seconds
        server.kill()

        with pytest.raises(httpx.HTTPError):  # the stream was cut: it was still running
            _drain(chunks)
        stream_cm.__exit__(None, None, None)
        csv.settimeout(10)
        try:
            answer = csv.recv(64)
        except ConnectionResetError:
            answer = b""
        csv.close()
        assert not answer.startswith(b"HTTP/1.1 201"), "the import finished before the kill"
        for ingester in ingesters:
            ingester.join(30)
        in_flight = [d for i in ingesters for d in i.unanswered]
        # What the kill left in the store: objects of ingests that never committed, at
        # most; never an image row without its object.
        left = ledger_cli(
            "doctor", "--json", "--min-age", "0", home=home, database_url=empty_db_url
        )
        found = json.loads(left.stdout)
        assert found["missing"] == []
        assert {f["kind"] for f in found["findings"]} <= {"unreferenced", "partial"}

        server.start().wait_ready()
        _nothing_half_written(settings, [d for i in ingesters for d in i.answered])
        # The slot the killed stream held is free again (the limit is one).
        again = http.post(
            f"/v1/grants/{grant_id}/archive",
            headers=release_headers,
            json={"sop_instance_uids": uids},
        )
        assert again.status_code == 200, again.text
        assert again.headers["ledger-released"] == str(COHORT)
        # An ingest the client saw fail is simply sent again.
        for data in in_flight:
            r = http.post(
                "/v1/images",
                content=data,
                headers={**_auth(keys["curator"]), "Content-Type": "application/dicom"},
            )
            assert r.status_code in (200, 201), r.text
        http.close()
    finally:
        server.stop()

    fixed = ledger_cli(
        "doctor", "--fix", "--json", "--min-age", "0", home=home, database_url=empty_db_url
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    clean = ledger_cli("doctor", "--json", "--min-age", "0", home=home, database_url=empty_db_url)
    assert json.loads(clean.stdout)["findings"] == []
    _every_image_opens(settings)
    verified = ledger_cli("audit", "verify", "--json", home=home, database_url=empty_db_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"]


def _drain(chunks: Iterator[bytes]) -> int:
    return sum(len(chunk) for chunk in chunks)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _setup(http: httpx.Client, admin: str) -> dict[str, str]:
    keys = {}
    for role in ("registrar", "curator", "steward", "pipeline"):
        r = http.post(
            "/v1/principals",
            headers=_auth(admin),
            json={
                "name": role,
                "kind": "pipeline" if role == "pipeline" else "person",
                "roles": [role],
            },
        )
        assert r.status_code == 201, r.text
        keys[role] = r.json()["api_key"]
    return keys


def _grant(http: httpx.Client, keys: dict[str, str]) -> tuple[str, str, list[str]]:
    """A cohort with consent and large images, a dataset, an approved request."""
    rows = "".join(f"{ISSUER},P{i:03d},permit,ai\n" for i in range(COHORT))
    r = http.post(
        "/v1/consents/import",
        content=HEADER + rows,
        headers={**_auth(keys["registrar"]), "Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    ids = []
    for i in range(COHORT):  # 512 x 512 x 16 bits: a stream too long for socket buffers
        r = http.post(
            "/v1/images",
            content=_dicom(f"P{i:03d}", i, size=512),
            headers={**_auth(keys["curator"]), "Content-Type": "application/dicom"},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r = http.post(
        "/v1/datasets", headers=_auth(keys["curator"]), json={"name": "cohort", "image_ids": ids}
    )
    assert r.status_code == 201, r.text
    r = http.post(
        "/v1/access-requests",
        headers=_auth(keys["pipeline"]),
        json={
            "dataset_id": r.json()["id"],
            "purpose": "ai.training",
            "justification": "Train a nodule detector for lung screening.",
        },
    )
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    r = http.post(
        f"/v1/access-requests/{request_id}/approve",
        headers=_auth(keys["steward"]),
        json={"comment": "ok"},
    )
    assert r.status_code == 200, r.text
    grant_id, token = r.json()["grant_id"], r.json()["grant"]
    r = http.get(
        f"/v1/grants/{grant_id}/manifest",
        headers={**_auth(keys["pipeline"]), "Ledger-Grant": token},
    )
    uids = [item["sop_instance_uid"] for item in r.json()["items"]]
    assert len(uids) == COHORT
    return grant_id, token, uids


def _nothing_half_written(settings: Settings, answered: list[bytes]) -> None:
    engine = make_engine(settings.resolved_database_url)
    try:
        with snapshot(engine) as session:

            def count(model: Any) -> int:
                return int(session.execute(select(func.count()).select_from(model)).scalar_one())

            logged = dict(
                session.execute(
                    select(col(LogEntry.event_type), func.count()).group_by(
                        col(LogEntry.event_type)
                    )
                ).all()
            )
            # Every row has its log entry and the other way round: no half of a transaction.
            assert logged["image.ingested"] == count(Image)
            assert logged["consent.recorded"] == count(ConsentVersion)
            imported = session.execute(
                select(func.count()).where(col(ConsentVersion.source) == "csv")
            ).scalar_one()
            assert imported in (COHORT, COHORT + CSV_ROWS)  # the big import: all or nothing
            shas = set(session.execute(select(col(Image.sha256))).scalars())
    finally:
        engine.dispose()
    assert {hashlib.sha256(d).hexdigest() for d in answered} <= shas  # answered = kept


def _every_image_opens(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    keys, store = wiring.keys(settings), wiring.store(settings)
    try:
        with snapshot(engine) as session:
            rows = session.execute(select(col(Image.subject_id), col(Image.sha256))).all()
            for subject_id, sha in rows:
                key = data_key(session, keys.master_key, subject_id, create=False)
                assert unseal(key, sha, store.get(sha))  # raises if sealed under a lost key
    finally:
        engine.dispose()
    assert len(rows) > COHORT
