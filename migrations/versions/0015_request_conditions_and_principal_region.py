"""Requests state their conditions and may name several diseases; principals have a region

* ``access_requests.conditions``: what a request states for the DUO modifiers that are
  conditions on the requester (PUB, RTN, COL, MOR); existing requests stated none.
* ``access_requests.duo_category`` widens to hold several disease CURIEs.
* ``principals.region``: the ISO 3166-1 alpha-2 country a principal acts from, what GS
  (geographical restriction) weighs; ``principals.institution``: the institution code IS
  (institution-specific) consents list. Existing principals have neither, which is outside
  every region and on no list (fail closed) until an administrator sets them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("access_requests") as batch:
        batch.add_column(sa.Column("conditions", JSON, nullable=False, server_default="{}"))
        batch.alter_column(
            "duo_category",
            existing_type=sa.String(length=128),
            type_=sa.String(length=1024),
            existing_nullable=True,
        )
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("region", sa.String(length=2), nullable=True))
        batch.add_column(sa.Column("institution", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("institution")
        batch.drop_column("region")
    with op.batch_alter_table("access_requests") as batch:
        batch.alter_column(
            "duo_category",
            existing_type=sa.String(length=1024),
            type_=sa.String(length=128),
            existing_nullable=True,
        )
        batch.drop_column("conditions")
