"""Erasure leaves no copy of the address, and the suppression list keeps only a keyed hash.

Issue 14, item 4: after a reader erased themselves, `bounce_events` still held their
address, the diagnostic and the raw message, `deliveries.last_error` could hold it too,
and the suppression list kept an unsalted sha256 anyone could test a guess against.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import JSON, Engine, String, Text, cast, create_engine, func, select, text

from newsletter.bounces import policy as bounces
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Base, Subscriber, Suppression
from newsletter.core.schema import alembic_config, upgrade
from newsletter.core.tokens import Purpose, make_reader_token, make_verp_token
from newsletter.core.validation import email_hash
from newsletter.sending import ledger
from newsletter.subscribers import eligibility, suppressions
from newsletter.web.app import create_app
from tests.conftest import ROOT, create_postgres_database, drop_postgres_database
from tests.factories import add_reader, sent_delivery

CORPUS = ROOT / "tests" / "data" / "bounces"
FIXED_TOKEN = "s7d42-0123456789abcdef0123"
ADDRESS = "leitora@example.com"


@pytest.fixture
def client(clean_db: str, redis_broker: str) -> Iterator[TestClient]:
    with TestClient(create_app()) as test_client:
        yield test_client


def rows_holding(needle: str) -> dict[str, int]:
    """Rows of every table whose text (strings, text, JSON) holds needle, any case."""
    found: dict[str, int] = {}
    with db.session_scope() as session:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                if not isinstance(column.type, String | Text | JSON):
                    continue
                number = session.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(func.lower(cast(column, Text)).contains(needle.lower(), autoescape=True))
                )
                if number:
                    found[f"{table.name}.{column.name}"] = int(number)
    return found


def a_reader_with_a_history() -> int:
    """A reader whose address the service has stored wherever it stores addresses."""
    reader = add_reader(ADDRESS, name="Leitora")
    settings = get_settings()
    # A relay refused a digest, quoting the address in its reply (the delivery's error).
    refused = sent_delivery(reader)
    with db.session_scope() as session:
        ledger.mark_bounced(
            session, delivery_id=refused, reply=f"550 5.1.1 <{ADDRESS.title()}>: User unknown"
        )
    # A DSN came back through our VERP address: event, diagnostic, raw, suppression detail.
    raw = (CORPUS / "postfix_user_unknown.eml").read_text()
    raw = raw.replace(FIXED_TOKEN, make_verp_token(settings.secret_key, reader))
    with db.session_scope() as session:
        outcome = bounces.process_message(session, raw.encode(), settings=settings)
    assert outcome.action == "suppressed", outcome
    # An ESP's report naming the address without our Message-ID: kept unverified.
    with db.session_scope() as session:
        bounces.record_provider_event(
            session,
            provider="mailgun",
            event_id="evt-1",
            kind="soft",
            settings=settings,
            email=ADDRESS.upper(),
            diagnostic=f"mailbox {ADDRESS} full",
            raw=f'{{"recipient": "{ADDRESS}"}}',
        )
    # Someone else's bounce report that quotes the address in passing.
    other = add_reader("outra@example.com")
    with db.session_scope() as session:
        bounces.record(
            session,
            kind="soft",
            source="mail",
            subscriber_id=other,
            delivery_id=None,
            recipient="outra@example.com",
            status="4.2.2",
            diagnostic=f"over quota (forwarded from {ADDRESS})",
            raw=f"To: outra@example.com\nCc: {ADDRESS}\n\nover quota",
            event_key="mail:other",
            verified=True,
            soft_limit=3,
            soft_window=timedelta(days=14),
        )
    held = rows_holding(ADDRESS)
    for where in (
        "subscribers.email",
        "bounce_events.recipient",
        "bounce_events.diagnostic",
        "bounce_events.raw",
        "deliveries.last_error",
        "suppressions.email",
        "suppressions.detail",
    ):
        assert where in held, (where, held)
    return reader


def test_erasure_leaves_the_address_in_no_row_of_any_table(client: TestClient) -> None:
    reader = a_reader_with_a_history()
    link = make_reader_token(get_settings().secret_key, Purpose.ERASE, reader, 0)
    erased = client.post(f"/erase/{link}")
    assert erased.status_code == 200, erased.text
    assert rows_holding(ADDRESS) == {}
    # Nor its plain sha256, which anyone can compute from a guess.
    assert rows_holding(hashlib.sha256(ADDRESS.encode()).hexdigest()) == {}
    with db.session_scope() as session:
        # What is left counts (the dashboard's bounce numbers) and protects: a keyed hash.
        assert session.scalar(select(func.count()).select_from(bounces.BounceEvent)) == 3
        entry = session.scalars(select(Suppression)).one()
        assert entry.email is None and entry.detail == ""
        assert entry.email_hash == email_hash(ADDRESS)
        assert suppressions.is_listed(session, ADDRESS)
        # The other reader's own record is kept, only the erased address is taken out.
        kept = session.scalar(
            select(bounces.BounceEvent.raw).where(bounces.BounceEvent.event_key == "mail:other")
        )
        assert kept is not None and "outra@example.com" in kept and "[erased address]" in kept


def test_the_command_line_erasure_leaves_nothing_either(clean_db: str) -> None:
    a_reader_with_a_history()
    erased = subprocess.run(
        [sys.executable, "-m", "newsletter", "subscribers", "erase", ADDRESS, "--yes"],
        cwd=ROOT,
        env={**os.environ, "NEWSLETTER_DATABASE_URL": clean_db},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert erased.returncode == 0, erased.stderr
    assert rows_holding(ADDRESS) == {}


def test_the_suppression_hash_is_keyed_by_the_servers_secret() -> None:
    plain = hashlib.sha256(ADDRESS.encode()).hexdigest()
    keyed = email_hash(ADDRESS)
    assert keyed != plain and len(keyed) == 64
    assert email_hash(ADDRESS, secret_key="another-secret-key-" + "x" * 20) != keyed
    assert keyed == email_hash(ADDRESS, secret_key=get_settings().secret_key)


# --- migration 0012 and re-keying after a new secret key ------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database_at_0010(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Engine]:
    """A database at revision 0010: address hashes as plain sha256."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path}/old.db")
        admin = url = None
    else:
        admin = request.getfixturevalue("postgres_server")
        url = create_postgres_database(admin)
        engine = create_engine(url)
    try:
        upgrade(engine, "0010_eligibility_and_lifecycle")
        yield engine
    finally:
        engine.dispose()
        if admin and url:
            drop_postgres_database(admin, url)


def test_migration_0012_keys_every_hash_the_erased_ones_too(database_at_0010: Engine) -> None:
    sha = {a: hashlib.sha256(a.encode()).hexdigest() for a in ("ana@example.com", "gone@x.org")}
    with database_at_0010.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO subscribers (email, email_key, email_hash, name, language, "
                "time_zone, topics, status, soft_bounce_count, created_at, updated_at) VALUES "
                "('Ana@example.com', 'ana@example.com', :hash, '', 'en', 'UTC', '[]', "
                "'active', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"hash": sha["ana@example.com"]},
        )
        for address, email in (("ana@example.com", "Ana@example.com"), ("gone@x.org", None)):
            connection.execute(
                text(
                    "INSERT INTO suppressions (email_hash, email, reason, detail, created_at) "
                    "VALUES (:hash, :email, 'manual', '', CURRENT_TIMESTAMP)"
                ),
                {"hash": sha[address], "email": email},
            )
    upgrade(database_at_0010)
    key = get_settings().secret_key
    with database_at_0010.connect() as connection:
        subscriber_hash = connection.execute(text("SELECT email_hash FROM subscribers")).scalar()
        listed = set(connection.execute(text("SELECT email_hash FROM suppressions")).scalars())
        version = connection.execute(text("SELECT token_version FROM subscribers")).scalar()
    assert subscriber_hash == email_hash("ana@example.com", secret_key=key)
    # The erased reader's entry, whose address nobody knows, is keyed all the same.
    assert listed == {email_hash("ana@example.com", secret_key=key), email_hash("gone@x.org")}
    assert version == 0
    # Read as the service reads it: the reader is suppressed, in the claim's own SQL.
    with db.session_scope(str(database_at_0010.url.render_as_string(hide_password=False))) as s:
        reader = s.scalars(select(Subscriber)).one()
        assert not s.scalar(select(eligibility.deliverable(reader.id)))
        assert suppressions.is_listed(s, "gone@x.org")

    config = alembic_config(database_at_0010)
    with database_at_0010.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0010_eligibility_and_lifecycle")
    with database_at_0010.connect() as connection:
        assert (
            connection.execute(text("SELECT email_hash FROM subscribers")).scalar()
            == (sha["ana@example.com"])
        )


def test_rekey_carries_the_list_over_to_a_new_secret_key(clean_db: str) -> None:
    add_reader("ana@example.com")
    with db.session_scope() as session:
        suppressions.add(session, email="Ana@example.com", reason="complaint")
        suppressions.suppress(session, email_key="gone@x.org", email=None, reason="erased")
    new_key = "rotated-secret-key-" + hashlib.sha256(b"new").hexdigest()
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": clean_db, "NEWSLETTER_SECRET_KEY": new_key}
    rekeyed = subprocess.run(
        [sys.executable, "-m", "newsletter", "suppressions", "rekey"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert "re-keyed 1 subscriber(s) and 1 suppressed address(es); 1 erased entry" in (
        rekeyed.stdout
    )
    with db.session_scope() as session:
        reader = session.scalars(select(Subscriber)).one()
        assert reader.email_hash == email_hash("ana@example.com", secret_key=new_key)
        listed = set(session.scalars(select(Suppression.email_hash)))
    assert email_hash("ana@example.com", secret_key=new_key) in listed
    # What an erasure left cannot be carried over: the old keyed hash stays, matching nothing.
    derived = hmac.new(get_settings().secret_key.encode(), b"suppression-hash", "sha256").digest()
    old = hmac.new(derived, hashlib.sha256(b"gone@x.org").hexdigest().encode(), "sha256")
    assert old.hexdigest() in listed
