"""``ledger grants``, ``models``, ``revocations`` and ``subjects impact`` from a terminal."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from ledger.cli import app
from ledger.config import Settings
from ledger.principals.models import Role
from tests.access.test_release import _approved_grant, _subject_of, _withdraw_all
from tests.conftest import MakePrincipal


def test_grants_models_revocations_and_impact(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    world: dict[str, str],
    make_principal: MakePrincipal,
) -> None:
    pipeline, _, grant = _approved_grant(client, world, make_principal)
    model = pipeline.register_model("detector", "2.0", "ab" * 32, [(grant.id, "validation")])
    registrar = make_principal(Role.registrar)
    subject = _subject_of(client, registrar, "P003")
    _withdraw_all(client, registrar, subject)
    make_principal(Role.steward, name="dr-revoke")
    runner = CliRunner()
    env = {"LEDGER_DATABASE_URL": settings.resolved_database_url}
    home = ["--home", str(settings.home)]

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, [*args, *home], env=env)
        return r.exit_code, r.output

    code, out = run("subjects", "impact", subject, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["models"] == [model["id"]]
    assert report["grants"][0]["images_blocked_now"] == 1
    code, out = run("models", "list", "--flagged", "--json")
    assert [m["id"] for m in json.loads(out)] == [model["id"]]
    code, out = run("models", "show", model["id"])
    assert code == 0, out
    assert "flagged" in out
    code, out = run("revocations", "--json")
    assert json.loads(out)["instances"][0]["grant_id"] == grant.id
    code, out = run("grants", "revoke", grant.id, "--steward", "dr-revoke", "--reason", "audit")
    assert code == 0, out
    code, out = run("grants", "revoke", grant.id, "--steward", "dr-revoke", "--reason", "again")
    assert code != 0
    code, out = run("grants", "list", "--json")
    assert json.loads(out) == []
    code, out = run("grants", "list", "--all", "--json")
    assert json.loads(out)[0]["revoke_reason"] == "audit"
    code, out = run("models", "show", "no-such-model")
    assert code != 0
