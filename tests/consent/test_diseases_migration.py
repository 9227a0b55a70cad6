"""Migration 0016 over consents recorded before disease codes named their system: it
rewrites nothing (the log commits to what was recorded) and names the codes that do not
normalise."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from ledger.db import alembic_config, upgrade

ROWS = [
    ("c1", ["ai.training", "DS:C34"]),
    ("c2", ["DS:MONDO_0004992"]),
    ("c3", ["ai", "DS:lung-cancer"]),
    ("c4", ["ai.training"]),
]


def _before_0016(url: str) -> None:
    """The database as 0015 left it, with consents of every kind of stored code."""
    before = ScriptDirectory.from_config(alembic_config(url)).get_revision("0016")
    assert before is not None
    upgrade(url, str(before.down_revision))
    engine = create_engine(url)
    scope = json.dumps({"modalities": [], "body_parts": []})
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO subjects (id, pseudonym, created_at) "
                    "VALUES ('s1', :p, CURRENT_TIMESTAMP)"
                ),
                {"p": b"\0" * 32},
            )
            for consent_id, purposes in ROWS:
                conn.execute(
                    text(
                        "INSERT INTO consents (consent_id, version, subject_id, event, status, "
                        "decision, purposes, modifiers, scope, terms, valid_from, recorded_at, "
                        "source) VALUES (:c, 1, 's1', 'granted', 'active', 'deny', :purposes, "
                        "'[]', :scope, :terms, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'api')"
                    ),
                    {
                        "c": consent_id,
                        "purposes": json.dumps(purposes),
                        "scope": scope,
                        "terms": consent_id * 32,
                    },
                )
    finally:
        engine.dispose()


def test_stored_codes_are_reported_not_rewritten(
    empty_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _before_0016(empty_db_url)
    engine = create_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT consent_id, purposes, terms FROM consents ORDER BY consent_id")
            ).all()
        with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
            upgrade(empty_db_url)
        with engine.connect() as conn:
            after = conn.execute(
                text("SELECT consent_id, purposes, terms FROM consents ORDER BY consent_id")
            ).all()
        assert after == stored
        said = caplog.text
        assert "0 canonical, 2 read normalised, 1 do not normalise" in said
        assert "Nothing was rewritten" in said
        assert "DS:lung-cancer (1 consent(s), 1 active) does not normalise" in said
        assert "DS:C34 " not in said  # a code that normalises is not named
    finally:
        engine.dispose()


def test_ledger_db_upgrade_names_the_codes_that_do_not_normalise(
    empty_db_url: str, tmp_path: Path
) -> None:
    """``ledger db upgrade`` configures no logging: the warning still reaches the terminal."""
    _before_0016(empty_db_url)
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "db", "upgrade"],
        capture_output=True,
        text=True,
        env={**os.environ, "LEDGER_DATABASE_URL": empty_db_url, "LEDGER_HOME": str(tmp_path)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "DS:lung-cancer (1 consent(s), 1 active) does not normalise" in done.stderr
    assert "Traceback" not in done.stderr
