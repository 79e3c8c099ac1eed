"""An index on deliveries.sent_at, for the dashboard's messages per hour and rates per day.

Revision ID: 0009_delivery_sent_at_index
Revises: 0008_admin_sessions
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_delivery_sent_at_index"
down_revision: str | None = "0008_admin_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.create_index(batch_op.f("ix_deliveries_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_sent_at"))
