"""Dispatch bookkeeping: recurring digests' keys, the dispatcher's cursor, delivery claims.

Revision ID: 0004_dispatch
Revises: 0003_digest_variants
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_dispatch"
down_revision: str | None = "0003_digest_variants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("digests") as batch_op:
        batch_op.add_column(sa.Column("schedule_key", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("dispatch_cursor", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_digests_schedule_key"), ["schedule_key"])
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("claimed_by")
    with op.batch_alter_table("digests") as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_digests_schedule_key"), type_="unique")
        batch_op.drop_column("dispatched_at")
        batch_op.drop_column("dispatch_cursor")
        batch_op.drop_column("schedule_key")
