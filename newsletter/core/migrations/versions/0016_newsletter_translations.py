"""newsletters.translations: each newsletter's name and description in other languages.

The `daily` newsletter every install starts with gets its Portuguese and Chinese names.

Revision ID: 0016_newsletter_translations
Revises: 0013_bounce_trust
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_newsletter_translations"
down_revision: str | None = "0015_local_time_waves"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_TRANSLATIONS = {"pt": {"name": "Resumo diário"}, "zh": {"name": "每日摘要"}}


def upgrade() -> None:
    with op.batch_alter_table("newsletters") as batch_op:
        batch_op.add_column(sa.Column("translations", sa.JSON(), nullable=True))
    # Only the name it was created with: a `daily` the editor renamed is theirs to translate.
    newsletters = sa.table(
        "newsletters",
        sa.column("slug", sa.String()),
        sa.column("name", sa.String()),
        sa.column("translations", sa.JSON()),
    )
    op.execute(
        newsletters.update()
        .where(newsletters.c.slug == "daily", newsletters.c.name == "Daily digest")
        .values(translations=DEFAULT_TRANSLATIONS)
    )


def downgrade() -> None:
    with op.batch_alter_table("newsletters") as batch_op:
        batch_op.drop_column("translations")
