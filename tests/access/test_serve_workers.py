"""`ledger serve --workers 2`: both workers answer authorize from the same state, and a
withdrawal turns the next authorize into a deny on every worker (the decision mark lives
in the database, not in a process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from ledger.config import Settings
from ledger.principals.models import Role
from tests.access.test_release import _study_of, _subject_of, _withdraw_all
from tests.conftest import MakePrincipal, auth
from tests.servers import free_port

CALLS = 24  # enough for the kernel to hand connections to both workers


def _authorize(http: httpx.Client, key: str, study: str) -> set[str]:
    seen = set()
    for _ in range(CALLS):
        with httpx.Client(base_url=http.base_url, timeout=30) as fresh:  # a new connection
            r = fresh.post(
                "/v1/authorize",
                headers=auth(key),
                json={"purpose": "ai.inference", "study_instance_uid": study},
            )
        assert r.status_code == 200, r.text
        seen.add(r.json()["decision"])
    return seen


def test_two_workers_deny_at_once_after_a_withdrawal(
    settings: Settings,
    engine: Engine,
    world: dict[str, str],
    make_principal: MakePrincipal,
    tmp_path: Path,
) -> None:
    pipeline, registrar = make_principal(Role.pipeline), make_principal(Role.registrar)
    port = free_port()
    env: dict[str, Any] = {
        **os.environ,
        "LEDGER_HOME": str(settings.home),
        "LEDGER_DATABASE_URL": settings.resolved_database_url,
        "LEDGER_HASH_WORKER": "false",
        "LEDGER_CHECKPOINT_INTERVAL": "0",
    }
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ledger", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        subject = _subject_of(http, registrar, "P012")  # type: ignore[arg-type]
        study = _study_of(engine, subject)
        assert _authorize(http, pipeline, study) == {"permit"}  # cached on both workers
        _withdraw_all(http, registrar, subject)  # type: ignore[arg-type]
        assert _authorize(http, pipeline, study) == {"deny"}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
