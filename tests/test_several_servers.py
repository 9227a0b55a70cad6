"""Several `ledger serve` processes on one PostgreSQL database, driven at once.

Registrars, curators, stewards and pipelines call all three servers concurrently; then the
log has neither gap nor fork, every server denies the very next authorize after a
withdrawal made through another server, and a grant's download slots are counted across
servers. PostgreSQL only: several servers on one SQLite file is not a supported setup.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlmodel import col

from ledger.access.slots import SharedSlots
from ledger.client import LedgerClient
from ledger.config import Settings
from ledger.db import snapshot
from ledger.home import init_home
from ledger.images import synthetic
from ledger.keystore import load_keyring
from ledger.provenance.checkpoints import verifiers
from ledger.provenance.integrity import verify_database
from ledger.provenance.models import CheckpointRecord, LogEntry
from tests import servers
from tests.servers import Server, ledger_cli, require_postgres, start_all

PATIENTS = 30
LATE = 6  # patients registered while releases run: each moves the decision mark
ISSUER = "urn:test:several-servers"
ROLES = ("registrar", "curator", "steward", "pipeline")
T = TypeVar("T")


@pytest.fixture
def installation(empty_db_url: str, backend: str, tmp_path: Path) -> tuple[Path, str, str]:
    require_postgres(backend)
    home = tmp_path / "home"
    done = init_home(Settings(home=home, database_url=empty_db_url))
    return home, empty_db_url, done.admin.api_key


class Cluster:
    """HTTP clients for each server; every answer is counted, and none may be a 5xx."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.http = [httpx.Client(base_url=s.url, timeout=60) for s in servers]
        self.statuses: Counter[int] = Counter()
        self.authorized = 0
        self._lock = threading.Lock()

    def call(self, n: int, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
        r = self.http[n % len(self.http)].request(method, path, headers=headers, **kw)
        with self._lock:
            self.statuses[r.status_code] += 1
        assert r.status_code < 500, f"{method} {path} on server {n % 3}: {r.text}"
        return r

    def authorize(self, n: int, key: str, study: str) -> str:
        r = self.call(
            n,
            "POST",
            "/v1/authorize",
            key,
            json={"purpose": "ai.inference", "study_instance_uid": study},
        )
        assert r.status_code == 200, r.text
        with self._lock:
            self.authorized += 1
        decision: str = r.json()["decision"]
        return decision

    def sdk(self, n: int, key: str) -> LedgerClient:
        return LedgerClient(self.servers[n % len(self.servers)].url, key)

    def close(self) -> None:
        for client in self.http:
            client.close()


def _at_once(jobs: list[Callable[[], T]], workers: int = 8) -> list[T]:
    with ThreadPoolExecutor(workers) as pool:
        return [f.result() for f in [pool.submit(job) for job in jobs]]


def _study(i: int) -> str:
    return f"1.2.826.0.1.3680043.10.543.{i}"


def _dicom(i: int) -> bytes:
    return synthetic.instance(
        patient_id=f"P{i:03d}",
        issuer=ISSUER,
        modality="CT",
        body_part="CHEST",
        study_date=date(2024, 3, 1),
        study_uid=_study(i),
        series_uid=f"{_study(i)}.1",
        number=1,
        rng=random.Random(i),
    )


def test_three_servers_share_one_database(
    installation: tuple[Path, str, str], tmp_path: Path
) -> None:
    home, url, admin = installation
    servers = [
        Server(
            home,
            url,
            tmp_path / f"server-{n}.log",
            LEDGER_CHECKPOINT_INTERVAL="1",  # all three sign checkpoints as they go
            LEDGER_DECISION_LOG_INTERVAL="0.2",
            LEDGER_MAX_CONCURRENT_DOWNLOADS="2",
        )
        for n in range(3)
    ]
    cluster = Cluster(servers)
    try:
        start_all(servers)
        _drive(cluster, admin, tmp_path, url)
    finally:
        cluster.close()
        for server in servers:
            server.stop()  # a clean stop flushes each server's pending authorize decisions
    logs = "\n".join(s.log.read_text() for s in servers)
    assert "Traceback" not in logs, logs[-4000:]

    verified = ledger_cli("audit", "verify", "--json", home=home, database_url=url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"], report["faults"]
    assert report["checkpoints_checked"] >= 1
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(col(LogEntry.seq), col(LogEntry.event_type), col(LogEntry.entry)).order_by(
                    col(LogEntry.seq)
                )
            ).all()
    finally:
        engine.dispose()
    assert [r[0] for r in rows] == list(range(len(rows))) == list(range(report["entries"]))
    types = Counter(r[1] for r in rows)
    assert types["image.ingested"] == PATIENTS
    assert types["subject.created"] == PATIENTS + LATE  # one each, though two servers raced
    assert types["consent.recorded"] == PATIENTS + LATE
    assert types["consent.withdrawn"] == 3
    assert (types["request.evaluated"], types["grant.issued"]) == (3, 3)
    assert types["release.instances"] >= 3
    decided = sum(json.loads(r[2])["data"]["count"] for r in rows if r[1] == "authorize.decisions")
    assert decided == cluster.authorized  # every server's decisions are in the log


def _drive(cluster: Cluster, admin: str, tmp_path: Path, url: str) -> None:
    call = cluster.call
    made = _at_once(
        [
            lambda n=n, role=role: call(
                n,
                "POST",
                "/v1/principals",
                admin,
                json={
                    "name": role,
                    "kind": "pipeline" if role == "pipeline" else "person",
                    "roles": [role],
                },
            )
            for n, role in enumerate(ROLES)
        ]
    )
    keys = {role: r.json()["api_key"] for role, r in zip(ROLES, made, strict=True)}
    registrar, curator, steward, pipeline = (keys[r] for r in ROLES)

    def register(i: int) -> tuple[str, str]:
        r = call(
            i, "POST", "/v1/subjects", registrar, json={"issuer": ISSUER, "patient_id": f"P{i:03d}"}
        )
        assert r.status_code in (200, 201), r.text
        subject = r.json()["id"]
        r = call(
            i + 1,
            "POST",
            "/v1/consents",
            registrar,
            json={"subject_id": subject, "decision": "permit", "purposes": ["ai"]},
        )
        assert r.status_code == 201, r.text
        return subject, r.json()["id"]

    def ingest(i: int) -> dict[str, Any]:
        r = call(
            i + 2,
            "POST",
            "/v1/images",
            curator,
            content=_dicom(i),
            headers={"Content-Type": "application/dicom"},
        )
        assert r.status_code == 201, r.text
        image: dict[str, Any] = r.json()
        return image

    # Subjects, consents and images at once, on all three servers: the same patient is
    # often created by a registrar on one server and an image on another.
    jobs: list[Callable[[], Any]] = []
    for i in range(PATIENTS):
        jobs += [lambda i=i: register(i), lambda i=i: ingest(i)]
    done = _at_once(jobs)
    consents = [done[2 * i] for i in range(PATIENTS)]
    images = [done[2 * i + 1] for i in range(PATIENTS)]
    for (subject, _), image in zip(consents, images, strict=True):
        assert image["subject_id"] == subject

    r = call(
        1,
        "POST",
        "/v1/datasets",
        curator,
        json={"name": "all", "image_ids": [image["id"] for image in images]},
    )
    assert r.status_code == 201, r.text
    dataset = r.json()["id"]
    requests = _at_once(
        [
            lambda n=n: cluster.sdk(n, pipeline).request_access(
                dataset, "ai.training", f"Train a nodule detector, cohort {n}."
            )
            for n in range(3)
        ]
    )
    assert all(req["evaluation"]["eligible_count"] == PATIENTS for req in requests)
    approved = _at_once(
        [
            lambda n=n, req=req: call(
                n + 1,
                "POST",
                f"/v1/access-requests/{req['id']}/approve",
                steward,
                json={"comment": "ok"},
            )
            for n, req in enumerate(requests)
        ]
    )
    assert all(r.status_code == 200 for r in approved), [r.text for r in approved]

    def release(n: int, request_id: str) -> str:
        sdk = cluster.sdk(n, pipeline)
        grant = sdk.wait_for_grant(request_id, poll=0)
        report = sdk.download(grant, tmp_path / f"grant-{n}", batch=10, progress=False)
        assert report.downloaded == PATIENTS
        return grant.id

    def authorize_many(n: int) -> None:
        rng = random.Random(n)
        for k in range(20):
            assert cluster.authorize(n + k, pipeline, _study(rng.randrange(PATIENTS))) == "permit"

    def register_late(i: int) -> None:
        register(PATIENTS + i)

    busy: list[Callable[[], Any]] = [
        *(lambda n=n, req=req: release(n + 2, req["id"]) for n, req in enumerate(requests)),
        *(lambda n=n: authorize_many(n) for n in range(3)),
        *(lambda i=i: register_late(i) for i in range(LATE)),
    ]
    grants = [g for g in _at_once(busy) if isinstance(g, str)]
    assert len(grants) == 3

    # A withdrawal through one server: the very next authorize on every server denies.
    for n, i in enumerate((3, 7, 11)):
        for server in range(3):
            assert cluster.authorize(server, pipeline, _study(i)) == "permit"
            assert cluster.authorize(server, pipeline, _study(i)) == "permit"  # now cached
        r = call(n, "POST", f"/v1/consents/{consents[i][1]}/withdraw", registrar, json={})
        assert r.status_code == 200, r.text
        for other in (n + 1, n + 2, n):
            assert cluster.authorize(other, pipeline, _study(i)) == "deny", f"server {other % 3}"

    _slots_are_shared(cluster, pipeline, grants[0], url)


def _slots_are_shared(cluster: Cluster, pipeline: str, grant_id: str, url: str) -> None:
    """The limit is 2 per grant: with two slots held elsewhere (here: this process, as a
    fourth server would), every server refuses; with one free, every server serves."""
    sdk = cluster.sdk(0, pipeline)
    grant = sdk.grant(grant_id)
    uid = next(item["sop_instance_uid"] for item in sdk.manifest(grant) if item["available"])
    sdk.close()
    engine = create_engine(url)
    holder = SharedSlots(2, engine)

    def archives() -> Iterator[int]:
        for n in range(3):
            r = cluster.call(
                n,
                "POST",
                f"/v1/grants/{grant_id}/archive",
                pipeline,
                headers={"Ledger-Grant": grant.token},
                json={"sop_instance_uids": [uid]},
            )
            yield r.status_code

    try:
        holder.take(grant_id)
        holder.take(grant_id)
        assert list(archives()) == [429, 429, 429]
        holder.give(grant_id)
        assert list(archives()) == [200, 200, 200]
    finally:
        holder.give(grant_id)
        holder.give(grant_id)
        engine.dispose()


def test_requiring_postgres_fails_instead_of_skipping_when_it_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEDGER_REQUIRE_POSTGRES", "1")
    monkeypatch.delenv("LEDGER_TEST_DATABASE_URL", raising=False)
    monkeypatch.setattr(servers, "DEFAULT_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:1/")
    with pytest.raises(pytest.fail.Exception, match="LEDGER_REQUIRE_POSTGRES"):
        require_postgres("sqlite")
    monkeypatch.delenv("LEDGER_REQUIRE_POSTGRES")
    with pytest.raises(pytest.skip.Exception):
        require_postgres("sqlite")


def test_two_servers_signing_checkpoints_at_once_leave_one_verifying_log(
    installation: tuple[Path, str, str], tmp_path: Path
) -> None:
    """Two servers sign checkpoints on a 50 ms schedule and on demand, at once, while both
    append: every answer is a checkpoint, each size is signed once, and the log verifies
    against every checkpoint stored."""
    home, url, admin = installation
    servers = [
        Server(home, url, tmp_path / f"signer-{n}.log", LEDGER_CHECKPOINT_INTERVAL="0.05")
        for n in range(2)
    ]
    cluster = Cluster(servers)
    signed: list[tuple[int, str]] = []
    try:
        start_all(servers)
        auditor = cluster.call(
            0,
            "POST",
            "/v1/principals",
            admin,
            json={"name": "auditor", "kind": "person", "roles": ["auditor"]},
        ).json()["api_key"]

        def sign(n: int) -> None:
            r = cluster.call(n, "POST", "/v1/log/checkpoint", auditor)
            assert r.status_code == 201, r.text
            signed.append((r.json()["size"], r.json()["root_hash"]))

        def append_and_sign(n: int) -> None:
            for k in range(10):
                r = cluster.call(
                    n,
                    "POST",
                    "/v1/principals",
                    admin,
                    json={"name": f"w{n}-{k}", "kind": "person", "roles": ["curator"]},
                )
                assert r.status_code == 201, r.text
                sign(n)

        def sign_often(n: int) -> None:
            for _ in range(20):
                sign(n)

        _at_once(
            [lambda n=n: append_and_sign(n) for n in range(2)]
            + [lambda n=n: sign_often(n) for n in range(4)]
        )
    finally:
        cluster.close()
        for server in servers:
            server.stop()
    logs = "\n".join(s.log.read_text() for s in servers)
    assert "Traceback" not in logs, logs[-4000:]
    by_size: dict[int, set[str]] = {}
    for size, root in signed:
        by_size.setdefault(size, set()).add(root)
    assert all(len(roots) == 1 for roots in by_size.values()), by_size  # one root per size

    engine = create_engine(url)
    try:
        with snapshot(engine) as session:
            keys = load_keyring(home / "keys")
            origin = Settings(home=home, database_url=url).log_origin
            report = verify_database(session, verifiers(keys, origin), origin=origin)
            stored = session.execute(select(col(CheckpointRecord.size))).scalars().all()
    finally:
        engine.dispose()
    assert report.ok, report.faults
    assert report.checkpoints_checked == len(stored) >= len(by_size) > 1
    assert set(by_size) <= set(stored)
