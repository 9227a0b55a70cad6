"""``ledger audit``: verify the database, export a bundle, verify it with nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from ledger.cli import app
from ledger.config import Settings
from ledger.db import transaction
from ledger.provenance import log

runner = CliRunner()


def _run(settings: Settings, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        [*args, "--home", str(settings.home)],
        env={"LEDGER_DATABASE_URL": settings.resolved_database_url},
    )
    return result.exit_code, result.output


@pytest.fixture
def logged(engine: Engine, settings: Settings) -> str:
    """A log with 12 entries and two checkpoints; returns the second note."""
    for batch in range(2):
        with transaction(engine) as session:
            for i in range(6):
                log.append(session, "test.event", {"i": i, "batch": batch})
        code, note = _run(settings, "audit", "checkpoint")
        assert code == 0, note
    return note


def test_verify_database(settings: Settings, logged: str) -> None:
    code, out = _run(settings, "audit", "verify", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    assert report["entries"] == 12
    assert report["checkpoints_checked"] == 2


def test_export_then_verify_offline_with_only_the_package(
    settings: Settings, logged: str, tmp_path: Path
) -> None:
    bundle = tmp_path / "audit.zip"
    code, out = _run(settings, "audit", "export", str(bundle), "--json")
    assert code == 0, out
    assert json.loads(out)["entries"] == 12
    code, keys = _run(settings, "audit", "keys")
    assert code == 0
    (tmp_path / "keys.txt").write_text(keys)
    (tmp_path / "seen.note").write_text(logged)

    # A different machine: no LEDGER_HOME, no database, no server; keys pinned from a file.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["LEDGER_HOME"] = str(tmp_path / "nowhere")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ledger",
            "audit",
            "verify",
            "--bundle",
            str(bundle),
            "--key",
            f"@{tmp_path / 'keys.txt'}",
            "--checkpoint",
            str(tmp_path / "seen.note"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["checkpoints_checked"] == 3
    assert not (tmp_path / "nowhere").exists()


def _rewrite_entry(bundle: Path, out: Path, index: int) -> None:
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "entries.jsonl":
                lines = data.split(b"\n")
                lines[index] = lines[index].replace(b'"i":', b'"i":1')
                data = b"\n".join(lines)
            dst.writestr(item, data)


def test_tampered_bundle_fails_with_first_bad_index(
    settings: Settings, logged: str, tmp_path: Path
) -> None:
    bundle, forged = tmp_path / "audit.zip", tmp_path / "forged.zip"
    assert _run(settings, "audit", "export", str(bundle))[0] == 0
    _rewrite_entry(bundle, forged, 8)
    code, out = _run(settings, "audit", "verify", "--bundle", str(forged))
    assert code == 1
    assert "FAILED" in out
    assert "[6]" in out  # entries 6..11 are covered by the checkpoint that no longer matches


def test_bundle_with_keys_not_pinned_by_the_auditor_fails(
    settings: Settings, logged: str, tmp_path: Path
) -> None:
    bundle = tmp_path / "audit.zip"
    assert _run(settings, "audit", "export", str(bundle))[0] == 0
    stranger = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    code, out = _run(settings, "audit", "verify", "--bundle", str(bundle), "--key", stranger)
    assert code == 1
    assert "no signature from a trusted key" in out


@pytest.mark.parametrize("content", [b"", b"not a zip", None])
def test_unreadable_bundle_is_a_clear_error(
    settings: Settings, tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "bad.zip"
    if content is None:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("manifest.json", "{}")
    else:
        path.write_bytes(content)
    code, out = _run(settings, "audit", "verify", "--bundle", str(path))
    assert code == 2
    assert "error" in out


def test_bad_key_argument_is_a_clear_error(settings: Settings) -> None:
    code, out = _run(settings, "audit", "verify", "--key", "nonsense")
    assert code == 2
    assert "not a verifier key" in out


def test_lineage_with_prov_file(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    with transaction(engine) as session:
        log.append(session, "grant.issued", {"grant_id": "g-9", "dataset_id": "d-9"})
        log.append(session, "model.registered", {"model_id": "m-9", "grant_id": "g-9"})
    prov = tmp_path / "m-9.prov.json"
    code, out = _run(settings, "audit", "lineage", "model", "m-9", "--prov", str(prov), "--json")
    assert code == 0, out
    assert [e["type"] for e in json.loads(out)["events"]] == ["grant.issued", "model.registered"]
    assert "activity" in json.loads(prov.read_text())
    code, out = _run(settings, "audit", "lineage", "planet", "x")
    assert code == 1
