"""consent terms key: what a consent version says, as one short key

Existing versions get their key computed here, in batches, from their stored JSON.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ledger.consent.terms import terms_key
from ledger.dbtypes import JSONType

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5_000


def upgrade() -> None:
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("terms", sa.String(length=64), nullable=True))
    consents = sa.table(
        "consents",
        sa.column("consent_id", sa.String),
        sa.column("version", sa.Integer),
        sa.column("decision", sa.String),
        sa.column("purposes", JSONType),
        sa.column("modifiers", JSONType),
        sa.column("scope", JSONType),
        sa.column("terms", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            consents.c.consent_id,
            consents.c.version,
            consents.c.decision,
            consents.c.purposes,
            consents.c.modifiers,
            consents.c.scope,
        )
    ).all()
    update = (
        sa.update(consents)
        .where(
            consents.c.consent_id == sa.bindparam("key_consent"),
            consents.c.version == sa.bindparam("key_version"),
        )
        .values(terms=sa.bindparam("key_terms"))
    )
    for start in range(0, len(rows), BATCH):
        bind.execute(
            update,
            [
                {
                    "key_consent": r.consent_id,
                    "key_version": r.version,
                    "key_terms": terms_key(r.decision, r.purposes, r.modifiers, r.scope),
                }
                for r in rows[start : start + BATCH]
            ],
        )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.alter_column("terms", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_column("terms")
