"""Upgrading keeps the data: a database made at the first migration, with a row in every
table it had, brought to today's schema by `newsletter init`, and the service works on it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, create_engine, func, insert, select, text
from sqlalchemy.orm import Session

from newsletter.core.config import get_settings
from newsletter.core.models import Delivery, Digest, Subscriber, Subscription, Suppression
from newsletter.core.schema import alembic_config, upgrade
from newsletter.digests import dispatcher, lifecycle, reports
from newsletter.subscribers import suppressions
from newsletter.subscribers.eligibility import may_be_mailed
from tests.conftest import ROOT, VAR_DIR, create_postgres_database, drop_postgres_database
from tests.factories import run_newsletter

FIRST = "0001"
NOW = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database of each kind, not yet migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{VAR_DIR / f'upgrade-{uuid.uuid4().hex[:8]}.db'}"
        return
    admin = request.getfixturevalue("postgres_server")
    url = create_postgres_database(admin)
    yield url
    drop_postgres_database(admin, url)


def init_env(database_url: str, var: Path) -> dict[str, str]:
    """`newsletter init`'s environment: this database, and this process's secret key (the
    suppression list is re-hashed with it, and checked with it here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_DATABASE_URL=database_url,
        NEWSLETTER_VAR_DIR=str(var),
        NEWSLETTER_SECRET_KEY=get_settings().secret_key,
        NEWSLETTER_ADMIN_TOKEN=get_settings().admin_token,
    )
    return env


def fill_first_schema(engine: Engine) -> None:
    """One or two rows in every table of the first schema, as that version wrote them."""
    tables = MetaData()
    tables.reflect(engine)
    assert set(tables.tables) - {"alembic_version"} == {
        "articles",
        "newsletters",
        "subscribers",
        "suppressions",
        "digests",
        "subscriptions",
        "deliveries",
        "subscriber_events",
    }
    t = tables.tables
    with engine.begin() as connection:
        connection.execute(
            insert(t["newsletters"]),
            [
                {
                    "id": 1,
                    "slug": "daily",
                    "name": "Diário",
                    "description": "As notícias da manhã",
                    "language": "pt",
                    "schedule_cron": "0 7 * * *",
                    "time_zone": "Europe/Lisbon",
                    "created_at": NOW,
                }
            ],
        )
        connection.execute(
            insert(t["articles"]),
            [
                {
                    "id": 1,
                    "slug": "macau-ponte",
                    "title": "A nova ponte de Macau",
                    "summary": "Abre amanhã.",
                    "body": "Texto.",
                    "url": "https://plataforma.test/macau-ponte",
                    "language": "pt",
                    "topics": ["macau"],
                    "published_at": NOW - timedelta(hours=3),
                    "source": "seed",
                    "content_hash": "a" * 64,
                    "priority": 0,
                    "hidden": False,
                    "created_at": NOW,
                }
            ],
        )
        connection.execute(
            insert(t["subscribers"]),
            [
                {
                    "id": id_,
                    "email": email,
                    "email_key": email,
                    "name": name,
                    "language": "pt",
                    "time_zone": "Asia/Macau",
                    "topics": [],
                    "status": "active",
                    "soft_bounce_count": 0,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for id_, email, name in [
                    (1, "ana@example.com", "Ana"),
                    (2, "bruno@example.com", "Bruno"),
                ]
            ],
        )
        connection.execute(
            insert(t["subscriptions"]),
            [
                {
                    "id": 1,
                    "subscriber_id": 1,
                    "newsletter_id": 1,
                    "status": "subscribed",
                    "created_at": NOW,
                    "confirmed_at": NOW,
                    "consent_source": "web",
                },
                {
                    "id": 2,
                    "subscriber_id": 2,
                    "newsletter_id": 1,
                    "status": "unsubscribed",
                    "created_at": NOW,
                    "confirmed_at": NOW,
                    "unsubscribed_at": NOW,
                    "consent_source": "web",
                },
            ],
        )
        connection.execute(
            insert(t["suppressions"]),
            [
                {
                    "id": 1,
                    # The first version kept a plain sha256 of the address.
                    "email_hash": hashlib.sha256(b"blocked@example.com").hexdigest(),
                    "email": "blocked@example.com",
                    "reason": "manual",
                    "detail": "asked by phone",
                    "created_at": NOW,
                }
            ],
        )
        connection.execute(
            insert(t["digests"]),
            [
                {
                    "id": 1,
                    "newsletter_id": 1,
                    "state": "sent",
                    "subject": "Diário de 5 de janeiro",
                    "since": NOW - timedelta(days=1),
                    "until": NOW,
                    "note": "",
                    "created_at": NOW,
                    "started_at": NOW,
                    "finished_at": NOW + timedelta(minutes=2),
                }
            ],
        )
        connection.execute(
            insert(t["deliveries"]),
            [
                {
                    "id": 1,
                    "digest_id": 1,
                    "subscriber_id": 1,
                    "status": "sent",
                    "attempts": 1,
                    "message_id": "<1.1@plataforma.test>",
                    "sent_at": NOW + timedelta(minutes=1),
                    "claimed_at": NOW,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            ],
        )
        connection.execute(
            insert(t["subscriber_events"]),
            [
                {
                    "id": 1,
                    "subscriber_id": 1,
                    "kind": "confirmed",
                    "newsletter_id": 1,
                    "detail": {"source": "web"},
                    "created_at": NOW,
                }
            ],
        )
        if engine.dialect.name == "postgresql":
            # Rows the first version wrote took their ids from the sequences: so here too.
            for name in set(t) - {"alembic_version"}:
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), max(id)) "
                        f"FROM {name}"
                    )
                )


def test_init_upgrades_a_first_version_database_and_keeps_every_row(
    old_database: str, tmp_path: Path
) -> None:
    engine = create_engine(old_database)
    try:
        upgrade(engine, FIRST)
        fill_first_schema(engine)
        # One connection, closed before the upgrade: an open one would hold its tables.
        with engine.connect() as connection:
            before = {
                name: connection.execute(text(f"SELECT count(*) FROM {name}")).scalar()
                for name in (
                    "subscribers",
                    "subscriptions",
                    "suppressions",
                    "digests",
                    "deliveries",
                )
            }
    finally:
        engine.dispose()

    init = run_newsletter("init", "--no-seeds", env=init_env(old_database, tmp_path), timeout=300)
    assert init.returncode == 0, init.stderr
    assert "database ready" in init.stdout

    engine = create_engine(old_database)
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
        assert version == head
        with Session(engine) as session:
            for model, name in [
                (Subscriber, "subscribers"),
                (Subscription, "subscriptions"),
                (Suppression, "suppressions"),
                (Digest, "digests"),
                (Delivery, "deliveries"),
            ]:
                count = session.scalar(select(func.count()).select_from(model))
                assert count == before[name], name
            # The old suppression still suppresses, under today's keyed hash.
            assert suppressions.is_listed(session, "blocked@example.com")
            # The sent digest's history reads as it did.
            status = reports.digest_status(session, 1)
            assert status["state"] == "sent" and status["counts"]["sent"] == 1
            # Who may be mailed is decided as before: Ana yes, Bruno (unsubscribed) no.
            mailable = session.scalars(
                select(Subscriber.email).where(may_be_mailed(Subscriber.id, 1))
            ).all()
            assert mailable == ["ana@example.com"]
            # And a new digest goes to her on the upgraded schema.
            digest = lifecycle.create_digest(
                session, newsletter_slug="daily", since=NOW - timedelta(days=1), now=NOW
            )
            session.commit()
            lifecycle.start_due(session, now=NOW)
            session.commit()
            page = dispatcher.dispatch_page(session, digest_id=digest.id, settings=get_settings())
            session.commit()
            assert len(page.queued) == 1
    finally:
        engine.dispose()


def test_two_machines_upgrading_at_once_upgrade_once(old_database: str, tmp_path: Path) -> None:
    """Several web machines start together, each running `newsletter init`: on PostgreSQL
    one upgrades and the others wait for it, then find nothing to do."""
    if not old_database.startswith("postgresql"):
        pytest.skip("SQLite is one machine's file")
    starts = [
        subprocess.Popen(
            [sys.executable, "-m", "newsletter", "init", "--no-seeds"],
            cwd=ROOT,
            # Each machine its own var/ (and so its own embedded broker).
            env=init_env(old_database, tmp_path / f"machine-{n}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for start in starts:
        _, errors = start.communicate(timeout=300)
        assert start.returncode == 0, errors
    engine = create_engine(old_database)
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    finally:
        engine.dispose()
