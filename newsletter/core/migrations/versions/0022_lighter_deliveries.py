"""lighter deliveries: the indexes on message_id and sent_at hold only messages sent, and
variant_id has none, so that each delivery's insert, hold and claim writes three index
entries fewer and its mark one fewer (issue 18, the send at the speed of the wire).

Every non-HOT update of a row writes an entry into each of the table's indexes; a row
not yet sent has no Message-ID nor sent_at, and nothing looks deliveries up by variant.
A lookup by either column (a bounce's Message-ID, the dashboard's counts by hour) names
a value, and so still finds the partial index.

Revision ID: 0022_lighter_deliveries
Revises: 0021_workers
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_lighter_deliveries"
down_revision: str | None = "0021_workers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTIAL = ("message_id", "sent_at")


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_index("ix_deliveries_variant_id")
        for column in PARTIAL:
            batch_op.drop_index(f"ix_deliveries_{column}")
            condition = sa.text(f"{column} IS NOT NULL")
            batch_op.create_index(
                f"ix_deliveries_{column}",
                [column],
                unique=False,
                postgresql_where=condition,
                sqlite_where=condition,
            )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        for column in PARTIAL:
            batch_op.drop_index(f"ix_deliveries_{column}")
            batch_op.create_index(f"ix_deliveries_{column}", [column], unique=False)
        batch_op.create_index("ix_deliveries_variant_id", ["variant_id"], unique=False)
