"""On SQLite, ids are never reused: they live on in tokens, VERP addresses and queued tasks.

Without AUTOINCREMENT, SQLite gives a new row the id of the newest deleted one: an erased
reader's old preferences link would then open the next reader's page. PostgreSQL's
sequences never reuse ids; there this revision does nothing.

Revision ID: 0007_sqlite_autoincrement
Revises: 0006_bounce_events
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_sqlite_autoincrement"
down_revision: str | None = "0006_bounce_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("newsletters", "subscribers", "digests", "digest_variants", "deliveries")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        # Copied into a new table declared AUTOINCREMENT (schema.upgrade turns foreign keys
        # off for SQLite migrations, so the copy cascades nothing).
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in reversed(TABLES):
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
