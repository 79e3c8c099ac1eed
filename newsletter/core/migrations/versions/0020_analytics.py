"""Analytics: link_events, a reader's refusal of per-reader records, the click order of a
newsletter, a digest's subject test and the arm of each delivery in it.

Revision ID: 0020_analytics
Revises: 0019_newsletter_sender
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_analytics"
down_revision: str | None = "0019_newsletter_sender"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "link_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column(
            "digest_id",
            sa.Integer(),
            sa.ForeignKey(
                "digests.id",
                name=op.f("fk_link_events_digest_id_digests"),
                ondelete="CASCADE",
            ),
            nullable=False,
        ),
        sa.Column(
            "variant_id",
            sa.Integer(),
            sa.ForeignKey(
                "digest_variants.id",
                name=op.f("fk_link_events_variant_id_digest_variants"),
                ondelete="SET NULL",
            ),
            nullable=True,
        ),
        sa.Column(
            "article_id",
            sa.Integer(),
            sa.ForeignKey(
                "articles.id",
                name=op.f("fk_link_events_article_id_articles"),
                ondelete="SET NULL",
            ),
            nullable=True,
        ),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("arm", sa.SmallInteger(), nullable=True),
        sa.Column("copy_key", sa.String(length=40), nullable=False),
        sa.Column(
            "subscriber_id",
            sa.Integer(),
            sa.ForeignKey(
                "subscribers.id",
                name=op.f("fk_link_events_subscriber_id_subscribers"),
                ondelete="CASCADE",
            ),
            nullable=True,
        ),
        sa.Column("machine", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_events")),
    )
    op.create_index("ix_link_events_digest_kind", "link_events", ["digest_id", "kind"])
    op.create_index("ix_link_events_article_at", "link_events", ["article_id", "occurred_at"])
    op.create_index("ix_link_events_occurred_at", "link_events", ["occurred_at"])
    op.create_index("ix_link_events_subscriber_id", "link_events", ["subscriber_id"])
    op.add_column(
        "subscribers",
        sa.Column("tracking_refused", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "newsletters",
        sa.Column("order_by_clicks", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("digests", sa.Column("subject_test", sa.JSON(), nullable=True))
    op.add_column("deliveries", sa.Column("arm", sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("arm")
    with op.batch_alter_table("digests") as batch_op:
        batch_op.drop_column("subject_test")
    with op.batch_alter_table("newsletters") as batch_op:
        batch_op.drop_column("order_by_clicks")
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_column("tracking_refused")
    op.drop_table("link_events")
