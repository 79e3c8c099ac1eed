"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from newsletter.core.models import Base
from newsletter.core.schema import alembic_config


def test_the_models_and_the_migrations_at_head_agree(engine: Engine) -> None:
    # The `engine` fixture has run every migration up to head, whatever head is today.
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            # What `newsletter db revision` compares (types), and the server defaults too.
            opts={"compare_type": True, "compare_server_default": True},
        )
        assert context.get_current_revision() == head
        drift = produce_migrations(context, Base.metadata).upgrade_ops
    assert drift is not None
    # Said as the migration that would make the database match the models.
    assert drift.is_empty(), (
        f"the models and the migrations differ on {engine.dialect.name} (a migration is "
        f"missing, or a model says otherwise):\n{render_python_code(drift)}"
    )
