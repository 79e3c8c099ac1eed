"""subscribers.email_hash, so suppression is checked in the claim; digests.paused_from.

Revision ID: 0010_eligibility_and_lifecycle
Revises: 0009_delivery_sent_at_index
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_eligibility_and_lifecycle"
down_revision: str | None = "0009_delivery_sent_at_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000
# SQLite copies a table to alter a column: the copy must keep AUTOINCREMENT (0007), or an
# erased reader's id would be given to the next one.
_KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.add_column(sa.Column("email_hash", sa.String(length=64), nullable=True))
    connection = op.get_bind()
    subscribers = sa.table(
        "subscribers",
        sa.column("id", sa.Integer),
        sa.column("email_key", sa.String),
        sa.column("email_hash", sa.String),
    )
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(subscribers.c.id, subscribers.c.email_key)
            .where(subscribers.c.id > last_id)
            .order_by(subscribers.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        connection.execute(
            subscribers.update()
            .where(subscribers.c.id == sa.bindparam("row_id"))
            .values(email_hash=sa.bindparam("hash")),
            [
                {"row_id": row.id, "hash": hashlib.sha256(row.email_key.encode()).hexdigest()}
                for row in rows
            ],
        )
        last_id = rows[-1].id
    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.alter_column("email_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(batch_op.f("ix_subscribers_email_hash"), ["email_hash"])

    with op.batch_alter_table("digests", table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.add_column(sa.Column("paused_from", sa.String(length=16), nullable=True))
    # Until now the state a digest was paused from was written into its note.
    for state in ("scheduled", "sending"):
        connection.execute(
            sa.text(
                "UPDATE digests SET paused_from = :state, note = '' "
                "WHERE state = 'paused' AND note = :note"
            ),
            {"state": state, "note": f"paused from {state}"},
        )


def downgrade() -> None:
    connection = op.get_bind()
    connection.execute(
        sa.text(
            "UPDATE digests SET note = 'paused from ' || paused_from "
            "WHERE state = 'paused' AND paused_from IS NOT NULL"
        )
    )
    with op.batch_alter_table("digests", table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.drop_column("paused_from")
    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscribers_email_hash"))
        batch_op.drop_column("email_hash")
