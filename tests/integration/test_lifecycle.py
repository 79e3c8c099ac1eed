"""The digest's state machine on SQLite and PostgreSQL: pause and resume, how a send ends;
and the migration that gave the paused state its own column (what each state allows:
tests/unit/digests/test_lifecycle.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from newsletter.core import db
from newsletter.core.models import Delivery, DeliveryStatus, Digest, DigestState
from newsletter.core.schema import upgrade
from newsletter.digests import lifecycle
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.factories import add_reader

NOW = datetime(2026, 12, 4, 7, 0, tzinfo=UTC)


@pytest.fixture
def session(clean_db: str) -> Iterator[Session]:
    with db.session_scope() as session:
        yield session


def test_a_digest_resumes_to_the_state_it_was_paused_from(session: Session) -> None:
    later = lifecycle.create_digest(session, newsletter_slug="daily", send_at=NOW + timedelta(1))
    now = lifecycle.create_digest(session, newsletter_slug="daily", send_at=NOW)
    assert lifecycle.start_due(session, now=NOW) == [now.id]
    for digest in (later, now):
        before = digest.state
        lifecycle.pause(session, digest_id=digest.id)
        assert (digest.state, digest.paused_from, digest.note) == (DigestState.PAUSED, before, "")
        with pytest.raises(lifecycle.DigestActionError, match="only a sending or scheduled"):
            lifecycle.pause(session, digest_id=digest.id)
        lifecycle.resume(session, digest_id=digest.id)
        assert (digest.state, digest.paused_from) == (before, None)


def _deliveries(session: Session, digest: Digest, statuses: list[DeliveryStatus]) -> None:
    for n, status in enumerate(statuses):
        reader = add_reader(f"reader{digest.id}-{n}@example.com")
        session.add(Delivery(digest_id=digest.id, subscriber_id=reader, status=status))
    digest.state, digest.dispatched_at = DigestState.SENDING, NOW
    session.flush()


@pytest.mark.parametrize(
    ("statuses", "ends"),
    [
        ([DeliveryStatus.FAILED, DeliveryStatus.FAILED], DigestState.FAILED),
        ([DeliveryStatus.FAILED, DeliveryStatus.SKIPPED], DigestState.FAILED),
        ([DeliveryStatus.FAILED, DeliveryStatus.SENT], DigestState.SENT),
        ([DeliveryStatus.BOUNCED, DeliveryStatus.FAILED], DigestState.SENT),
        ([DeliveryStatus.SENT, DeliveryStatus.SKIPPED], DigestState.SENT),
    ],
)
def test_a_send_that_reached_nobody_and_failed_ends_failed(
    session: Session, statuses: list[DeliveryStatus], ends: DigestState
) -> None:
    digest = lifecycle.create_digest(session, newsletter_slug="daily", send_at=NOW)
    session.commit()
    _deliveries(session, digest, statuses)
    assert lifecycle.finish_if_done(session, digest_id=digest.id, now=NOW)
    session.refresh(digest)
    assert digest.state == ends
    assert lifecycle.allowed_actions(digest.state) == frozenset()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Engine]:
    """A database at revision 0009, before eligibility and the paused_from column."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path}/old.db")
        admin = url = None
    else:
        admin = request.getfixturevalue("postgres_server")
        url = create_postgres_database(admin)
        engine = create_engine(url)
    try:
        upgrade(engine, revision="0009_delivery_sent_at_index")
        yield engine
    finally:
        engine.dispose()
        if admin and url:
            drop_postgres_database(admin, url)


def test_the_migration_fills_the_hash_and_the_paused_state(old_database: Engine) -> None:
    now = NOW.replace(tzinfo=None)
    with old_database.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO newsletters (id, slug, name, description, language, time_zone, "
                "created_at) VALUES (1, 'daily', 'Daily', '', 'en', 'Asia/Macau', :now)"
            ),
            {"now": now},
        )
        for n in range(3):
            connection.execute(
                text(
                    "INSERT INTO subscribers (email, email_key, name, language, time_zone, "
                    "topics, status, soft_bounce_count, created_at, updated_at) VALUES "
                    "(:email, :key, '', 'en', 'UTC', '[]', 'active', 0, :now, :now)"
                ),
                {"email": f"Reader{n}@Example.com", "key": f"reader{n}@example.com", "now": now},
            )
        for note in ("paused from scheduled", "paused from sending"):
            connection.execute(
                text(
                    "INSERT INTO digests (newsletter_id, state, note, created_at, "
                    "dispatch_cursor) VALUES (1, 'paused', :note, :now, 0)"
                ),
                {"note": note, "now": now},
            )
    # 0010 as it was (0012 then keys these hashes: tests/integration/test_erasure.py).
    upgrade(old_database, "0010_eligibility_and_lifecycle")
    with old_database.connect() as connection:
        hashes = connection.execute(
            text("SELECT email_key, email_hash FROM subscribers ORDER BY id")
        ).all()
        paused = connection.execute(text("SELECT paused_from, note FROM digests ORDER BY id")).all()
    assert [h for _, h in hashes] == [hashlib.sha256(k.encode()).hexdigest() for k, _ in hashes]
    assert [tuple(row) for row in paused] == [("scheduled", ""), ("sending", "")]
    if old_database.dialect.name == "sqlite":
        # The tables SQLite copied to alter them still never reuse an id (revision 0007).
        with old_database.connect() as connection:
            for table in ("subscribers", "digests"):
                sql = connection.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = :table"), {"table": table}
                ).scalar_one()
                assert "AUTOINCREMENT" in sql, table
