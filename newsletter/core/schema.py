"""Create or upgrade the database schema with Alembic, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


# The key of PostgreSQL's advisory lock held while the schema is upgraded.
UPGRADE_LOCK = 0x6E6C_5343  # "nlSC"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to the newest revision (or the one named); a no-op when it is there.

    On PostgreSQL under an advisory lock: several machines starting at once each run
    `newsletter init`; one upgrades, the others wait, then find the schema at head.
    """
    config = alembic_config(engine)
    with engine.connect() as connection:
        locked = engine.dialect.name == "postgresql"
        if locked:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({UPGRADE_LOCK})")
            connection.commit()
        try:
            _upgrade(connection, config, revision)
        finally:
            if locked and not connection.invalidated:
                connection.rollback()
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({UPGRADE_LOCK})")
                connection.commit()


def _upgrade(connection: Connection, config: Config, revision: str) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite alters a table by copying it and dropping the old one; with foreign
        # keys on, the drop would cascade to every row that refers to it.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    with connection.begin():
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    if sqlite:
        problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
        if problems:
            raise RuntimeError(f"the migration left broken references: {problems[:5]}")


def make_revision(engine: Engine, message: str) -> None:
    """Autogenerate a migration from the models (for developers: `newsletter db revision`)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
