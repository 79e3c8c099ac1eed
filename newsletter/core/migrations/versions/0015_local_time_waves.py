"""Local-time sending: newsletters.schedule_in_reader_zones; digests.local_time, local_day.

Revision ID: 0015_local_time_waves
Revises: 0013_bounce_trust
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_local_time_waves"
down_revision: str | None = "0014_story_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "newsletters",
        sa.Column(
            "schedule_in_reader_zones", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
    )
    op.add_column("digests", sa.Column("local_time", sa.String(length=5), nullable=True))
    op.add_column("digests", sa.Column("local_day", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("digests") as batch_op:
        batch_op.drop_column("local_day")
        batch_op.drop_column("local_time")
    with op.batch_alter_table("newsletters") as batch_op:
        batch_op.drop_column("schedule_in_reader_zones")
