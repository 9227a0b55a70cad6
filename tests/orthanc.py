"""A real Orthanc (Debian's ``orthanc``, ``orthanc-dicomweb``, ``orthanc-python``) on a
loopback high port with its own temporary storage and credentials, for the PACS tests.

Tests skip with a clear message where Orthanc is not installed, and fail instead when
LEDGER_REQUIRE_ORTHANC=1 (``.ci/run`` sets it), so a CI without it cannot pass by
skipping."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
PYTHON_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPython.so"
USER, PASSWORD = "ledger", "orthanc-test-password"


def require_orthanc(*plugins: str) -> str:
    """The Orthanc binary, or a skip (a failure under LEDGER_REQUIRE_ORTHANC=1)."""
    binary = shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None
    )
    missing = [p for p in plugins if not Path(p).exists()]
    if binary and not missing:
        return binary
    what = "Orthanc" if not binary else ", ".join(missing)
    message = (
        f"needs {what}: apt-get install orthanc orthanc-dicomweb orthanc-python "
        "(.ci/run installs them)"
    )
    if os.environ.get("LEDGER_REQUIRE_ORTHANC"):
        pytest.fail(f"{message}, and LEDGER_REQUIRE_ORTHANC=1")
    pytest.skip(message)


class Orthanc:
    """One Orthanc process: ``start``, ``upload``, ``stop``; ``url`` and ``dicomweb``."""

    def __init__(
        self,
        root: Path,
        *,
        plugins: Iterable[str] = (DICOMWEB_PLUGIN,),
        extra: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.auth = (USER, PASSWORD)
        self.binary = require_orthanc(*plugins)
        self.env = {**os.environ, **(env or {})}
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "orthanc.json"
        self.log = root / "orthanc.log"
        self.config.write_text(
            json.dumps(
                {
                    "Name": "ledger-test",
                    "StorageDirectory": str(root / "storage"),
                    "IndexDirectory": str(root / "index"),
                    "HttpPort": self.port,
                    "RemoteAccessAllowed": False,
                    "DicomServerEnabled": False,
                    "AuthenticationEnabled": True,
                    "RegisteredUsers": {USER: PASSWORD},
                    "Plugins": list(plugins),
                    "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
                    "StableAge": 1,
                    **(extra or {}),
                },
                indent=1,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Orthanc:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [self.binary, str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.root,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"Orthanc exited:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/system", auth=self.auth, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"Orthanc did not start:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.1)

    def upload(self, files: Iterable[bytes]) -> list[str]:
        """Store files through Orthanc's REST API; their Orthanc instance ids."""
        ids = []
        with httpx.Client(auth=self.auth, timeout=60) as http:
            for data in files:
                r = http.post(f"{self.url}/instances", content=data)
                r.raise_for_status()
                ids.append(str(r.json()["ID"]))
        return ids

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
