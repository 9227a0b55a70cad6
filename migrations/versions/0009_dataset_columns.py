"""dataset columns: a dataset's image attributes packed for evaluation

Datasets created before this revision get their columns on their first evaluation
(``ledger.images.columns.load``), so the upgrade itself reads no image rows.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dataset_columns",
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.Column("image_count", sa.Integer(), nullable=False),
        sa.Column("arrays", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_columns_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_dataset_columns")),
    )


def downgrade() -> None:
    op.drop_table("dataset_columns")
