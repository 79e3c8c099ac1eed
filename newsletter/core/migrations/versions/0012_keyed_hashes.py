"""Keyed address hashes; subscribers.token_version; the shared sign-in attempt counter.

The suppression list and subscribers.email_hash kept a plain sha256 of each address,
which anyone holding a copy could test a guessed address against. They become an
HMAC-SHA256 of that sha256 under a key derived from the server's secret key, so every
row is re-keyed here without knowing its address, erased readers' included.

Revision ID: 0012_keyed_hashes
Revises: 0010_eligibility_and_lifecycle
"""

import hashlib
import hmac
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_keyed_hashes"
down_revision: str | None = "0010_eligibility_and_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000
# SQLite copies a table to alter a column: the copy must keep AUTOINCREMENT (0007).
_KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.add_column(
            sa.Column("token_version", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_table(
        "admin_signin_attempts",
        sa.Column("client_hash", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_hash", name=op.f("pk_admin_signin_attempts")),
    )
    tables = [table for table in ("subscribers", "suppressions") if _has_rows(table)]
    if tables:  # a new database needs no secret key to be created
        key = _hash_key()
        for table in tables:
            _rehash(table, lambda plain: _keyed(key, plain))


def downgrade() -> None:
    # Back to plain sha256 where the address is known; an erased reader's entry keeps its
    # keyed hash (its address is gone), and no longer matches under the older code.
    _rehash_from_addresses()
    op.drop_table("admin_signin_attempts")
    with op.batch_alter_table("subscribers", table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.drop_column("token_version")


def _hash_key() -> bytes:
    # The key as newsletter.core.validation.email_hash derives it today, from the secret
    # key the service runs with (written out here: a migration keeps what was true then).
    from newsletter.core.config import get_settings

    secret_key = get_settings().secret_key
    return hmac.new(secret_key.encode(), b"suppression-hash", hashlib.sha256).digest()


def _keyed(key: bytes, plain: str) -> str:
    return hmac.new(key, plain.encode(), hashlib.sha256).hexdigest()


def _has_rows(table: str) -> bool:
    return op.get_bind().execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None


def _rehash(name: str, new_hash: Callable[[str], str]) -> None:
    """Every row's email_hash replaced by new_hash(old), a batch at a time."""
    connection = op.get_bind()
    table = sa.table(name, sa.column("id", sa.Integer), sa.column("email_hash", sa.String))
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(table.c.id, table.c.email_hash)
            .where(table.c.id > last_id)
            .order_by(table.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        connection.execute(
            table.update()
            .where(table.c.id == sa.bindparam("row_id"))
            .values(email_hash=sa.bindparam("hash")),
            [{"row_id": row.id, "hash": new_hash(row.email_hash)} for row in rows],
        )
        last_id = rows[-1].id


def _rehash_from_addresses() -> None:
    connection = op.get_bind()
    for name, address in (("subscribers", "email_key"), ("suppressions", "email")):
        table = sa.table(
            name,
            sa.column("id", sa.Integer),
            sa.column(address, sa.String),
            sa.column("email_hash", sa.String),
        )
        rows = connection.execute(
            sa.select(table.c.id, table.c[address]).where(table.c[address].is_not(None))
        ).all()
        if rows:
            connection.execute(
                table.update()
                .where(table.c.id == sa.bindparam("row_id"))
                .values(email_hash=sa.bindparam("hash")),
                [
                    {"row_id": row.id, "hash": hashlib.sha256(row[1].lower().encode()).hexdigest()}
                    for row in rows
                ],
            )
