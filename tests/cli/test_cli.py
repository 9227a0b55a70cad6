"""The ``ledger`` command, run as a user would (a real subprocess for init and errors)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.cli import app

runner = CliRunner()


def _ledger(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def _env(home: Path, db_url: str | None = None) -> dict[str, str]:
    env = {"LEDGER_HOME": str(home)}
    if db_url:
        env["LEDGER_DATABASE_URL"] = db_url
    return env


def test_init_creates_private_home_and_prints_admin_key(tmp_path: Path) -> None:
    home = tmp_path / "h"
    done = _ledger("init", "--json", env=_env(home))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["api_key"].startswith("ldg_")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for f in (home / "keys").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    again = _ledger("init", env=_env(home))
    assert again.returncode == 1
    assert "already initialised" in again.stderr
    assert "Traceback" not in again.stderr


def test_principals_commands(tmp_path: Path) -> None:
    env = _env(tmp_path / "h")
    assert runner.invoke(app, ["init"], env=env).exit_code == 0
    made = runner.invoke(
        app,
        ["principals", "create", "--name", "X", "--role", "admin", "--json"],
        env=env,
    )
    assert made.exit_code == 0, made.output
    body = json.loads(made.stdout)
    assert set(body) >= {"id", "api_key"}
    listed = json.loads(runner.invoke(app, ["principals", "list", "--json"], env=env).stdout)
    assert {p["name"] for p in listed} == {"admin", "X"}
    assert runner.invoke(app, ["principals", "disable", "X"], env=env).exit_code == 0
    rotated = runner.invoke(app, ["principals", "rotate-key", "admin", "--json"], env=env)
    assert json.loads(rotated.stdout)["api_key"].startswith("ldg_")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["principals", "create", "--name", "Y", "--role", "wizard"], "unknown role"),
        (["principals", "disable", "nobody"], "no principal named"),
    ],
)
def test_cli_errors_are_clear(tmp_path: Path, args: list[str], message: str) -> None:
    env = _env(tmp_path / "h")
    assert _ledger("init", env=env).returncode == 0
    done = _ledger(*args, env=env)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_unmigrated_database_tells_which_command_to_run(tmp_path: Path) -> None:
    env = _env(tmp_path / "h", f"sqlite:///{tmp_path / 'blank.db'}")
    done = _ledger("principals", "list", env=env)
    assert done.returncode == 1
    assert "ledger db upgrade" in done.stderr
    assert _ledger("db", "upgrade", env=env).returncode == 0
    current = json.loads(_ledger("db", "current", "--json", env=env).stdout)
    assert current["up_to_date"] is True


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    env = _env(tmp_path / "h", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    done = _ledger("principals", "list", env=env)
    assert done.returncode == 1
    assert "cannot reach the database" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_sets_up_every_role(tmp_path: Path) -> None:
    done = runner.invoke(app, ["demo", "--home", str(tmp_path / "d"), "--no-serve", "--json"])
    assert done.exit_code == 0, done.output
    keys = json.loads(done.stdout)["keys"]
    assert {"admin", "registrar", "curator", "steward", "pipeline", "auditor"} <= set(keys)


def test_demo_uses_the_configured_database_and_prints_working_commands(
    tmp_path: Path, db_url: str
) -> None:
    from sqlalchemy import create_engine, func, select

    from ledger.consent.models import Subject
    from ledger.db import redacted

    env = {"LEDGER_DATABASE_URL": db_url, "LEDGER_HOME": str(tmp_path / "elsewhere")}
    home = tmp_path / "d"
    done = runner.invoke(app, ["demo", "--home", str(home), "--no-serve"], env=env)
    assert done.exit_code == 0, done.output
    out = done.output
    assert f"Database: {redacted(db_url)}" in out
    # The commands it prints work without an activated virtual environment.
    bin_dir = Path(sys.executable).absolute().parent
    assert f"{bin_dir / 'ledger'} audit verify --home {home.resolve()}" in out
    assert f"{Path(sys.executable).absolute()} {home.resolve() / 'walkthrough.py'}" in out
    # The permissions example names a real subject, not a placeholder to paste.
    assert "<id>" not in out
    line = next(x for x in out.splitlines() if "/permissions?purpose=" in x)
    subject_id = line.split("/v1/subjects/")[1].split("/permissions")[0]
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert (
                conn.execute(
                    select(func.count()).select_from(Subject).where(Subject.id == subject_id)
                ).scalar_one()
                == 1
            )
    finally:
        engine.dispose()

    verified = runner.invoke(app, ["audit", "verify", "--home", str(home), "--json"], env=env)
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.stdout)
    assert report["ok"] is True
    assert report["database"] == redacted(db_url)
    plain = runner.invoke(app, ["audit", "verify", "--home", str(home)], env=env)
    assert redacted(db_url) in plain.output
