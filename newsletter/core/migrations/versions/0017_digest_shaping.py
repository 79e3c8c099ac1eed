"""digests.intro, subjects, pinned, excluded: the editor's note, subjects and story order.

Revision ID: 0017_digest_shaping
Revises: 0016_newsletter_translations
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_digest_shaping"
down_revision: str | None = "0016_newsletter_translations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("intro", "subjects", "pinned", "excluded")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("digests", sa.Column(name, sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("digests") as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
