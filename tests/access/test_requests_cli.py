"""``ledger requests``: a steward works the queue from a terminal."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from ledger.cli import app
from ledger.config import Settings
from ledger.principals.models import Role
from tests.access.test_access_api import _file, _population, _rows
from tests.conftest import MakePrincipal


def test_steward_queue(
    client: TestClient, engine: Engine, settings: Settings, make_principal: MakePrincipal
) -> None:
    world = _population(engine, settings, _rows(permit=25))
    pipeline = make_principal(Role.pipeline, name="robot")
    make_principal(Role.steward, name="dr-who")
    make_principal(Role.auditor, name="not-a-steward")
    first = _file(client, pipeline, world["all"]).json()["id"]
    second = _file(client, pipeline, world["all"]).json()["id"]
    runner = CliRunner()
    env = {"LEDGER_DATABASE_URL": settings.resolved_database_url}
    home = ["--home", str(settings.home)]

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, [*args, *home], env=env)
        return r.exit_code, r.output

    code, out = run("requests", "list", "--json")
    assert {r["id"] for r in json.loads(out)} == {first, second}
    code, out = run("requests", "show", first)
    assert code == 0, out
    assert "Composition" in out
    code, out = run("requests", "approve", first, "--steward", "not-a-steward", "--comment", "x")
    assert code == 1
    code, out = run(
        "requests", "approve", first, "--steward", "dr-who", "--comment", "ok", "--json"
    )
    assert code == 0, out
    assert json.loads(out)["grant"]
    code, out = run("requests", "reject", second, "--steward", "dr-who", "--comment", "dup")
    assert code == 0, out
    code, out = run("requests", "list", "--json")
    assert json.loads(out) == []
    code, out = run("requests", "replay", first, "--json")
    assert json.loads(out)["same_answer"] is True
