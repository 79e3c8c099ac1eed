"""bounce_events.verified (only proven reports act on a reader); webhook_tokens (replays).

Events recorded before this revision that found a reader acted on it, so they are marked
verified; the ones that found nobody stay unverified.

Revision ID: 0013_bounce_trust
Revises: 0012_keyed_hashes
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_bounce_trust"
down_revision: str | None = "0012_keyed_hashes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "bounce_events",
        sa.Column("verified", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute(
        sa.text(
            "UPDATE bounce_events SET verified = :yes WHERE subscriber_id IS NOT NULL"
        ).bindparams(yes=True)
    )
    op.create_table(
        "webhook_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("token", sa.String(length=128), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_tokens")),
        sa.UniqueConstraint("provider", "token", name=op.f("uq_webhook_tokens_provider")),
    )
    op.create_index(op.f("ix_webhook_tokens_seen_at"), "webhook_tokens", ["seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_tokens_seen_at"), table_name="webhook_tokens")
    op.drop_table("webhook_tokens")
    with op.batch_alter_table("bounce_events") as batch_op:
        batch_op.drop_column("verified")
