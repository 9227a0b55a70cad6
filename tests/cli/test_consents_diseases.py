"""``ledger consents diseases``: the disease codes stored consents carry, which of them are
read normalised and which do not normalise (kept, failing closed), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from ledger.cli import app
from ledger.clock import utcnow
from ledger.consent import service
from ledger.consent.models import ConsentVersion
from ledger.consent.schemas import ConsentCreate, SubjectCreate, WithdrawBody
from ledger.consent.terms import terms_key
from ledger.db import snapshot, transaction

runner = CliRunner()


def _legacy(session: Any, subject_id: str, purposes: list[str]) -> str:
    """A consent row as versions before code systems were named stored it (the API now
    normalises on input, so such rows can only be written directly)."""
    consent_id = str(uuid.uuid4())
    scope: dict[str, Any] = {"modalities": [], "body_parts": []}
    session.add(
        ConsentVersion(
            consent_id=consent_id,
            version=1,
            subject_id=subject_id,
            event="granted",
            status="active",
            decision="deny",
            purposes=purposes,
            modifiers=[],
            scope=scope,
            terms=terms_key("deny", purposes, [], scope),
            valid_from=utcnow(),
            recorded_at=utcnow(),
            source="api",
        )
    )
    session.flush()
    return consent_id


@pytest.fixture
def stored(engine: Engine) -> dict[str, str]:
    with transaction(engine) as session:
        subject = service.create_subject(
            session, b"k" * 32, SubjectCreate(issuer="urn:test:h", patient_id="P1"), actor=None
        ).id
        service.record(
            session,
            ConsentCreate(
                subject_id=subject,
                decision="permit",
                purposes=["ai.training", "DS:ICD10CM:C34.1"],
            ),
            actor=None,
        )
        old = _legacy(session, subject, ["ai.training", "DS:C34"])
        _legacy(session, subject, ["DS:MONDO_0004992"])
        gone = _legacy(session, subject, ["ai", "DS:lung-cancer"])
        service.withdraw(session, gone, WithdrawBody(reason="test"), actor=None)
    return {"old": old, "gone": gone}


def _run(db_url: str, home: Path, *args: str) -> Any:
    env = {"LEDGER_DATABASE_URL": db_url, "LEDGER_HOME": str(home)}
    return runner.invoke(app, ["consents", "diseases", *args], env=env)


def test_every_stored_code_is_listed_with_what_it_is_read_as(
    stored: dict[str, str], db_url: str, engine: Engine, tmp_path: Path
) -> None:
    with snapshot(engine) as session:
        before = session.execute(select(ConsentVersion.purposes, ConsentVersion.terms)).all()
    done = _run(db_url, tmp_path, "--json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    codes = {c["stored"]: c for c in out["codes"]}
    assert sorted(codes) == ["C34", "ICD10CM:C34.1", "MONDO_0004992", "lung-cancer"]
    assert codes["ICD10CM:C34.1"]["status"] == "canonical"
    assert codes["C34"]["status"] == "normalises"
    assert codes["C34"]["canonical"] == "ICD10CM:C34"
    assert codes["C34"]["hierarchy"] is True
    assert "lung" in codes["C34"]["label"].lower()
    assert codes["MONDO_0004992"]["canonical"] == "MONDO:0004992"
    assert codes["MONDO_0004992"]["hierarchy"] is False  # no ontology file configured
    unreadable = codes["lung-cancer"]
    assert unreadable["status"] == "unreadable"
    assert unreadable["canonical"] is None
    assert "not a code of a known system" in unreadable["problem"]
    assert (unreadable["versions"], unreadable["consents"], unreadable["active"]) == (2, 1, 0)
    assert out["summary"] == {
        "codes": 4,
        "canonical": 1,
        "normalises": 2,
        "unreadable": 1,
        "without_hierarchy": 2,
    }
    # A report, never a rewrite.
    with snapshot(engine) as session:
        after = session.execute(select(ConsentVersion.purposes, ConsentVersion.terms)).all()
    assert sorted(map(tuple, after), key=str) == sorted(map(tuple, before), key=str)

    plain = _run(db_url, tmp_path)
    assert plain.exit_code == 0, plain.output
    assert "4 code(s): 1 canonical, 2 read normalised, 1 do not normalise" in plain.output


def test_check_lists_only_codes_that_do_not_normalise_and_fails(
    stored: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    done = _run(db_url, tmp_path, "--check", "--json")
    assert done.exit_code == 1, done.output
    assert [c["stored"] for c in json.loads(done.stdout)["codes"]] == ["lung-cancer"]
    plain = _run(db_url, tmp_path, "--check")
    assert plain.exit_code == 1
    assert "DS:lung-cancer" in plain.output


def test_check_passes_when_every_code_normalises(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    with transaction(engine) as session:
        subject = service.create_subject(
            session, b"k" * 32, SubjectCreate(issuer="urn:test:h", patient_id="P2"), actor=None
        ).id
        _legacy(session, subject, ["DS:c34.1"])
    done = _run(db_url, tmp_path, "--check", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["codes"] == []
