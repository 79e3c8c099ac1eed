"""An index on deliveries.subscriber_id, for the composer's look at each reader's history.

Revision ID: 0005_delivery_history_index
Revises: 0004_dispatch
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_delivery_history_index"
down_revision: str | None = "0004_dispatch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deliveries_subscriber_id"), ["subscriber_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_subscriber_id"))
