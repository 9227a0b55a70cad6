"""FHIR originals are sealed per version under the subject's data key; identifiers hashed

The plaintext originals in ``fhir_consents.resource`` held patient identifiers and names in
clear; they are dropped, not carried over (a migration has no key to seal them with). Those
consents keep everything the ledger enforces and are answered as generated R5 resources.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 16:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import ledger.dbtypes

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("fhir_consents") as batch:
        batch.add_column(sa.Column("subject_id", sa.String(length=36), nullable=True))
    op.execute(
        "UPDATE fhir_consents SET subject_id = (SELECT c.subject_id FROM consents c "
        "WHERE c.consent_id = fhir_consents.consent_id AND c.version = 1)"
    )
    op.execute("DELETE FROM fhir_consents WHERE subject_id IS NULL")
    with op.batch_alter_table("fhir_consents") as batch:
        batch.alter_column("subject_id", existing_type=sa.String(length=36), nullable=False)
        batch.create_index(batch.f("ix_fhir_consents_subject_id"), ["subject_id"], unique=False)
        batch.create_foreign_key(
            batch.f("fk_fhir_consents_subject_id_subjects"), "subjects", ["subject_id"], ["id"]
        )
        batch.drop_column("resource")
        batch.drop_column("fhir_version")
    op.create_table(
        "fhir_consent_versions",
        sa.Column("consent_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("fhir_version", sa.String(length=8), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("date_start", ledger.dbtypes.UTCDateTime(timezone=True), nullable=True),
        sa.Column("date_end", ledger.dbtypes.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["fhir_consents.consent_id"],
            name=op.f("fk_fhir_consent_versions_consent_id_fhir_consents"),
        ),
        sa.PrimaryKeyConstraint("consent_id", "version", name=op.f("pk_fhir_consent_versions")),
    )
    with op.batch_alter_table("fhir_consent_versions") as batch:
        batch.create_index(batch.f("ix_fhir_consent_versions_digest"), ["digest"], unique=False)
    op.create_table(
        "fhir_identifiers",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("consent_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["fhir_consents.consent_id"],
            name=op.f("fk_fhir_identifiers_consent_id_fhir_consents"),
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_fhir_identifiers")),
    )
    with op.batch_alter_table("fhir_identifiers") as batch:
        batch.create_index(batch.f("ix_fhir_identifiers_consent_id"), ["consent_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fhir_identifiers") as batch:
        batch.drop_index(batch.f("ix_fhir_identifiers_consent_id"))
    op.drop_table("fhir_identifiers")
    with op.batch_alter_table("fhir_consent_versions") as batch:
        batch.drop_index(batch.f("ix_fhir_consent_versions_digest"))
    op.drop_table("fhir_consent_versions")
    with op.batch_alter_table("fhir_consents") as batch:
        batch.add_column(
            sa.Column("fhir_version", sa.String(length=8), nullable=False, server_default="R5")
        )
        batch.add_column(sa.Column("resource", JSON, nullable=False, server_default="{}"))
    with op.batch_alter_table("fhir_consents") as batch:
        batch.alter_column("fhir_version", server_default=None)
        batch.alter_column("resource", server_default=None)
        batch.drop_constraint(batch.f("fk_fhir_consents_subject_id_subjects"), type_="foreignkey")
        batch.drop_index(batch.f("ix_fhir_consents_subject_id"))
        batch.drop_column("subject_id")
