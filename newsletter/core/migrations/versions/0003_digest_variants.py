"""Digest variants: one rendering per distinct selection, and the delivery's link to it.

Revision ID: 0003_digest_variants
Revises: 0002_feeds
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_digest_variants"
down_revision: str | None = "0002_feeds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "digest_variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("article_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["digests.id"],
            name=op.f("fk_digest_variants_digest_id_digests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_variants")),
        sa.UniqueConstraint("digest_id", "key", name=op.f("uq_digest_variants_digest_id")),
    )
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("variant_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_deliveries_variant_id"), ["variant_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_deliveries_variant_id_digest_variants"),
            "digest_variants",
            ["variant_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_deliveries_variant_id_digest_variants"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_deliveries_variant_id"))
        batch_op.drop_column("variant_id")
    op.drop_table("digest_variants")
