"""articles.story: the key that ties the translations of one story together.

Revision ID: 0014_story_key
Revises: 0013_bounce_trust
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_story_key"
down_revision: str | None = "0013_bounce_trust"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("articles") as batch_op:
        batch_op.add_column(sa.Column("story", sa.String(length=100), nullable=True))
        batch_op.create_index(batch_op.f("ix_articles_story"), ["story"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch_op:
        batch_op.drop_index(batch_op.f("ix_articles_story"))
        batch_op.drop_column("story")
