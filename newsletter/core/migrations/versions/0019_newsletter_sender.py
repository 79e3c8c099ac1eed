"""newsletters.from_name, reply_to: each newsletter's sender name and Reply-To address.

Revision ID: 0019_newsletter_sender
Revises: 0018_test_sends
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_newsletter_sender"
down_revision: str | None = "0018_test_sends"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("newsletters", sa.Column("from_name", sa.String(length=200), nullable=True))
    op.add_column("newsletters", sa.Column("reply_to", sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("newsletters") as batch_op:
        batch_op.drop_column("reply_to")
        batch_op.drop_column("from_name")
