"""Migrations reach head from an empty database, match the models, and go back down."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import ledger.tables  # noqa: F401
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
