"""Principals carry the type of organisation they act for (NPU weighs it)

Existing principals become ``unknown``, which NPU (DUO:0000045) counts as for-profit: an
administrator sets ``not_for_profit`` where it holds (``ledger principals
organisation-type``, ``PUT /v1/principals/{id}/organisation-type``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.add_column(
            sa.Column(
                "organisation_type", sa.String(length=16), nullable=False, server_default="unknown"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("organisation_type")
