"""CSV import through the API and the CLI: all rows or none, errors with line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from ledger.cli import app
from ledger.config import Settings
from ledger.consent.models import ConsentVersion, Subject
from ledger.db import snapshot
from ledger.principals.models import Role
from ledger.provenance.models import LogEntry
from tests.conftest import MakePrincipal, auth

HEADER = (
    "issuer,patient_id,decision,purposes,modifiers,modalities,study_date_from,valid_until,"
    "sex,birth_year,site\n"
)
GOOD = HEADER + (
    "urn:h,P1,permit,ai;HMB,NCU,CT;MR,2020-01-01,,F,1960,north\n"
    "urn:h,P1,deny,ai.generative,,,,,,,\n"
    "urn:h,P2,permit,ai.training,,,,2030-01-01,M,1975,south\n"
    'urn:h,"P,3",permit,ai.inference,,,,,,,\n'
)


def _count(engine: Engine, model: type) -> int:
    with snapshot(engine) as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


@pytest.fixture
def registrar(make_principal: MakePrincipal) -> dict[str, str]:
    return auth(make_principal(Role.registrar))


def _upload(client: TestClient, h: dict[str, str], text: str | bytes) -> object:
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        "/v1/consents/import", content=data, headers={**h, "Content-Type": "text/csv"}
    )


def test_import_over_api(
    client: TestClient, registrar: dict[str, str], engine: Engine, make_principal: MakePrincipal
) -> None:
    r = _upload(client, registrar, GOOD)
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    assert r.json() == {"imported": 4, "subjects_created": 3, "errors": []}  # type: ignore[attr-defined]
    assert _count(engine, ConsentVersion) == 4
    # policy set activated, principal, one batch of 3 subjects, 4 consents
    assert _count(engine, LogEntry) == 7
    p1 = client.post(
        "/v1/subjects/lookup", json={"issuer": "urn:h", "patient_id": "P1"}, headers=registrar
    ).json()["id"]
    perm = client.get(
        f"/v1/subjects/{p1}/permissions", params={"purpose": "ai.generative,HMB"}, headers=registrar
    ).json()
    assert not perm["permitted"]
    perm = client.get(
        f"/v1/subjects/{p1}/permissions", params={"purpose": "ai.training,HMB"}, headers=registrar
    ).json()
    assert perm["permitted"]
    assert perm["scope"][0]["modalities"] == ["CT", "MR"]
    auditor = auth(make_principal(Role.auditor))
    lineage = client.get(f"/v1/audit/subjects/{p1}/lineage", headers=auditor).json()
    assert [e["type"] for e in lineage["events"]] == [
        "subjects.created",
        "consent.recorded",
        "consent.recorded",
    ]
    batch = lineage["events"][0]["data"]
    assert batch["subjects_in_entry"] == 3
    assert batch["subjects"] == [lineage["ref"].split(":", 1)[1]]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("issuer,patient_id,decision\nurn:h,P1,permit\n", 1, "missing column(s) purposes"),
        (HEADER.replace("site", "colour"), 1, "unknown column(s) colour"),
        (HEADER + "urn:h,P1,permit,ai.dreaming,,,,,,,\n", 2, "unknown purpose"),
        (HEADER + "urn:h,P1,maybe,ai,,,,,,,\n", 2, "decision"),
        (HEADER + "urn:h,P1,permit,ai,XYZ,,,,,,\n", 2, "unknown modifier"),
        (HEADER + "urn:h,P1,permit,ai,,,2020-13-01,,,,\n", 2, "study_date_from"),
        (HEADER + "urn:h,,permit,ai,,,,,,,\n", 2, "required"),
        (HEADER + "urn:h,P1,permit,ai,,,,,,,,extra\n", 2, "more fields"),
        (HEADER + "urn:h,P1,permit,ai,,,,,,,\nurn:h,P1,deny,ai,,,,,,,\n", 3, "contradicts line 2"),
        (HEADER, 2, "no rows"),
        # Demographics and identifiers: the JSON API's validator (SubjectCreate) for both.
        (HEADER + "urn:h,P1,permit,ai,,,,,Q,,\n", 2, "sex"),
        (HEADER + "urn:h,P1,permit,ai,,,,,,-5,\n", 2, "birth_year"),
        (HEADER + "urn:h,P1,permit,ai,,,,,,99999999999999999999,\n", 2, "birth_year"),
        (HEADER + "urn:h,P1,permit,ai,,,,,,19x0,\n", 2, "birth_year"),
        (HEADER + "urn:h,P1,permit,ai,,,,,,," + "s" * 5000 + "\n", 2, "site"),
        (HEADER + "urn:h,P1,permit,ai,,,,,,,nor\u202eth\n", 2, "site"),
        (HEADER + "urn:h,P1,permit,ai,,,,,,,no\x00rth\n", 2, "site"),
        (HEADER + "urn:h,P\x001,permit,ai,,,,,,,\n", 2, "patient_id"),
        (HEADER + "u" * 300 + ",P1,permit,ai,,,,,,,\n", 2, "issuer"),
        (HEADER + "urn:h,P1,permit,ai,,,,9999-12-31T23:59:59-14:00,,,\n", 2, "valid_until"),
        (HEADER + "urn:h,P1,permit,ai,,,,0001-01-01,,,\n", 2, "valid_until"),
    ],
)
def test_bad_files_import_nothing(
    client: TestClient,
    registrar: dict[str, str],
    engine: Engine,
    text: str,
    line: int,
    fragment: str,
) -> None:
    r = _upload(client, registrar, text)
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert fragment in json.dumps(body)
    assert body["errors"][0]["line"] == line
    assert _count(engine, ConsentVersion) == 0
    assert _count(engine, Subject) == 0


def test_non_utf8_file_names_the_line(client: TestClient, registrar: dict[str, str]) -> None:
    data = (HEADER + "urn:h,P1,permit,ai,,,,,,,\n").encode() + "urn:h,Müller,permit,ai\n".encode(
        "latin-1"
    )
    r = _upload(client, registrar, data)
    assert r.status_code == 422  # type: ignore[attr-defined]
    assert r.json()["detail"].startswith("line 3: the file is not UTF-8")  # type: ignore[attr-defined]


def test_wrong_media_type(client: TestClient, registrar: dict[str, str]) -> None:
    r = client.post("/v1/consents/import", json={"x": 1}, headers=registrar)
    assert r.status_code == 415


def test_cli_import_and_check(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"LEDGER_DATABASE_URL": settings.resolved_database_url}
    home = ["--home", str(settings.home)]
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    r = runner.invoke(app, ["consents", "import", str(good), "--json", *home], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["imported"] == 4
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "urn:h,P9,permit,ai.dreaming,,,,,,,\nurn:h,P9,permit,nope,,,,,,,\n")
    r = runner.invoke(app, ["consents", "import", str(bad), *home], env=env)
    assert r.exit_code == 1
    assert "line 2" in r.output
    assert "line 3" in r.output
    assert _count(engine, ConsentVersion) == 4
    r = runner.invoke(
        app, ["subjects", "find", "--issuer", "urn:h", "--patient-id", "P2", *home], env=env
    )
    sid = r.output.strip()
    r = runner.invoke(app, ["consents", "check", sid, "--purpose", "ai.training", *home], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["consents", "check", sid, "--purpose", "ai.inference", *home], env=env)
    assert r.exit_code == 3
    r = runner.invoke(app, ["consents", "show", sid, "--json", *home], env=env)
    consent_id = json.loads(r.output)[0]["id"]
    r = runner.invoke(app, ["consents", "withdraw", consent_id, *home], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["consents", "check", sid, "--purpose", "ai.training", *home], env=env)
    assert r.exit_code == 3
    r = runner.invoke(app, ["purposes", "--json"])
    assert "ai.generative" in r.output
