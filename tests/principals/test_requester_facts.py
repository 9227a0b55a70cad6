"""What the decision path weighs about a requester (issue 23): region (GS) and institution
(IS), set through the CLI and validated (a malformed value changes nothing)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ledger.cli import app
from ledger.config import Settings


def test_region_and_institution_from_the_cli(settings: Settings) -> None:
    runner = CliRunner()
    env = {"LEDGER_DATABASE_URL": settings.resolved_database_url}
    home = ["--home", str(settings.home)]

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, [*args, *home], env=env)
        return r.exit_code, r.output

    code, out = run(
        "principals", "create", "--name", "lab", "--role", "pipeline", "--kind", "pipeline",
        "--region", "fr", "--institution", "chu-lyon", "--json",
    )  # fmt: skip
    assert code == 0, out
    code, out = run("principals", "create", "--name", "bad", "--role", "pipeline",
                    "--region", "France")  # fmt: skip
    assert code != 0
    code, out = run("principals", "list", "--json")
    listed = {p["name"]: p for p in json.loads(out)}
    assert "bad" not in listed
    assert (listed["lab"]["region"], listed["lab"]["institution"]) == ("FR", "CHU-LYON")
    code, out = run("principals", "region", "lab", "de", "--json")
    assert code == 0, out
    assert json.loads(out)["region"] == "DE"
    code, out = run("principals", "institution", "lab", "UMC UTRECHT")
    assert code != 0
    code, out = run("principals", "region", "lab", "")
    assert code == 0, out
    code, out = run("principals", "list", "--json")
    assert {p["name"]: p for p in json.loads(out)}["lab"]["region"] is None
