"""Real `ledger serve` processes on loopback ports, for the tests that need several
servers or a server to kill: start, wait until healthy, stop or kill, read the log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import dbutil, pg_reachable

# `make test`'s default (Makefile PG_URL): where PostgreSQL is expected when required.
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/"


def require_postgres(backend: str) -> None:
    """Skip on SQLite, unless LEDGER_REQUIRE_POSTGRES=1 and PostgreSQL does not answer:
    then fail, so a CI without its database cannot pass by skipping."""
    if backend == "postgresql":
        return
    if os.environ.get("LEDGER_REQUIRE_POSTGRES"):
        url = dbutil.pg_base_url() or DEFAULT_PG_URL
        if pg_reachable.main(url) != 0:
            pytest.fail(f"PostgreSQL is not reachable at {url}, and LEDGER_REQUIRE_POSTGRES=1")
    pytest.skip("needs PostgreSQL: runs in the PostgreSQL pass (LEDGER_TEST_DATABASE_URL)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """One `ledger serve` process of an installation."""

    def __init__(self, home: Path, database_url: str, log: Path, **env: str) -> None:
        self.home, self.database_url, self.log = home, database_url, log
        self.env = {
            **os.environ,
            "LEDGER_HOME": str(home),
            "LEDGER_DATABASE_URL": database_url,
            "LEDGER_HASH_WORKER": "false",
            **env,
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        """Start (or start again, on the same port)."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ledger", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server exited ({self.process.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready within {timeout} s:\n{self.tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine or the OOM killer stops it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), killed if it takes too long."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start_all(servers: list[Server]) -> None:
    """Start together (imports overlap), then wait for each."""
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready()


def ledger_cli(*args: str, home: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEDGER_HOME": str(home), "LEDGER_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
