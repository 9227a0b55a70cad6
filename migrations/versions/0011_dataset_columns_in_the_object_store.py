"""dataset columns may live in the object store, sealed under a wrapped key of their own

Columns already in the database stay there; new datasets' columns go to the object store
when the server or the CLI creates them. Downgrading drops the columns kept in the store
(their rows, not the objects): the older code rebuilds them from the index on first use.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 06:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_columns") as batch:
        batch.add_column(sa.Column("address", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
        batch.alter_column("arrays", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM dataset_columns WHERE arrays IS NULL")
    with op.batch_alter_table("dataset_columns") as batch:
        batch.alter_column("arrays", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("wrapped_key")
        batch.drop_column("address")
