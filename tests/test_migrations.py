"""Migrations reach head from an empty database, match the models, and go back down."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import ledger.tables  # noqa: F401
from ledger.consent.terms import terms_key
from ledger.db import downgrade, head_revision, metadata, upgrade


def test_upgrade_matches_models_and_downgrades(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    engine = create_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert set(ctx.get_current_heads()) == set(head_revision().split(","))
            diff = compare_metadata(ctx, metadata)
        assert diff == [], f"models and migrations drift: {diff}"

        downgrade(empty_db_url, "base")
        with engine.connect() as conn:
            left = set(inspect(conn).get_table_names()) - {"alembic_version"}
        assert left == set()

        upgrade(empty_db_url)
        with engine.connect() as conn:
            assert set(metadata.tables) <= set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_terms_keys_are_computed_for_consents_recorded_before_them(empty_db_url: str) -> None:
    upgrade(empty_db_url, "0009")
    engine = create_engine(empty_db_url)
    scope = {"modalities": ["CT"], "body_parts": [], "study_date_from": None}
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO subjects (id, pseudonym, created_at) "
                    "VALUES ('s1', :p, CURRENT_TIMESTAMP)"
                ),
                {"p": b"\0" * 32},
            )
            for version in (1, 2):
                conn.execute(
                    text(
                        "INSERT INTO consents (consent_id, version, subject_id, event, status, "
                        "decision, purposes, modifiers, scope, valid_from, recorded_at, source) "
                        "VALUES ('c1', :v, 's1', 'granted', 'active', 'permit', :purposes, "
                        ":modifiers, :scope, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'api')"
                    ),
                    {
                        "v": version,
                        "purposes": json.dumps(["ai"]),
                        "modifiers": json.dumps(["NCU"] if version == 2 else []),
                        "scope": json.dumps(scope),
                    },
                )
        upgrade(empty_db_url)
        with engine.connect() as conn:
            keys = dict(
                conn.execute(text("SELECT version, terms FROM consents ORDER BY version")).all()
            )
        assert keys == {
            1: terms_key("permit", ["ai"], [], scope),
            2: terms_key("permit", ["ai"], ["NCU"], scope),
        }
    finally:
        engine.dispose()
