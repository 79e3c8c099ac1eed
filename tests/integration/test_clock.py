"""One clock, on every front end and in every email: the dateline in the newsletter's zone, and
a time typed without a zone read on its clock by the CLI and the API (the reading itself:
tests/unit/core/test_clock.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.articles.store import ParsedArticle, store_article
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Article, Digest, DigestState
from newsletter.digests import render as digests
from newsletter.digests import schedules
from newsletter.subscribers import store as subscribers
from tests.conftest import ROOT

# --- the dateline -------------------------------------------------------------------------


@pytest.fixture
def macau(clean_db: str) -> str:
    """The Macau newsletter, one reader of it, and a story published the evening before."""
    with db.session_scope() as session:
        schedules.add_newsletter(
            session, slug="macau", name="Macau Diário", time_zone="Asia/Macau", cron="0 7 * * *"
        )
        subscribers.subscribe(
            session,
            subscribers.SignupForm(email="leitor@example.com", newsletters=["macau"]),
            source="test",
            confirmed=True,
            default_language="en",
            default_time_zone="Asia/Macau",
            confirmation_interval=timedelta(minutes=10),
        )
        store_article(
            session,
            ParsedArticle(
                title="The bridge reopens",
                body="The bridge reopens. The body.",
                summary="The bridge reopens.",
                url=None,
                language="en",
                topics=[],
                published_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
                source="test",
            ),
        )
    return clean_db


@pytest.fixture
def session(macau: str) -> Iterator[Session]:
    with db.session_scope() as session:
        yield session


def test_a_macau_7_am_digest_carries_the_macau_date(session: Session) -> None:
    newsletter = schedules.newsletter_store.get_by_slug(session, "macau")
    # The 07:00 digest of 26 November in Macau is due, and starts, at 23:00 UTC on the 25th.
    due = schedules.latest_due("0 7 * * *", "Asia/Macau", datetime(2026, 11, 26, 0, 0, tzinfo=UTC))
    assert due == datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    digest = Digest(
        newsletter_id=newsletter.id,
        state=DigestState.SENDING,
        since=due - timedelta(days=1),
        until=due,
        started_at=due,
    )
    session.add(digest)
    session.flush()
    reader = subscribers.find_by_email(session, "leitor@example.com")
    batch = digests.render_for_readers(
        session, digest=digest, subscribers=[reader], settings=get_settings()
    )
    message = _parse(batch.messages[reader.id].data)
    assert "Macau Diário · November 26, 2026" in _part(message, "plain")
    assert "November 26, 2026" in _part(message, "html")
    assert "November 25" not in _part(message, "plain") + _part(message, "html")
    # The web copy of the digest says the same.
    web = digests.web_copy(session, digest_id=digest.id, variant_id=None, settings=get_settings())
    assert "November 26, 2026" in web and "November 25" not in web


def test_the_dateline_can_be_written_on_another_clock(session: Session) -> None:
    """The zone is a parameter: the next issue passes each reader's own."""
    newsletter = schedules.newsletter_store.get_by_slug(session, "macau")
    article_ids = tuple(session.scalars(select(Article.id)))
    prepared = digests.prepare_variant(
        session,
        newsletter=newsletter,
        selection=digests.composer.Selection("en", article_ids),
        settings=get_settings(),
        now=datetime(2026, 11, 25, 23, 0, tzinfo=UTC),
        time_zone="America/Sao_Paulo",
    )
    assert "Macau Diário · November 25, 2026" in prepared.rendered.text


# --- the front ends -----------------------------------------------------------------------


def newsletter_cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=ROOT,
        env={**os.environ, "NEWSLETTER_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored_digest(digest_id: int) -> tuple[datetime | None, datetime | None]:
    with db.session_scope() as session:
        digest = session.get(Digest, digest_id)
        assert digest is not None
        return digest.since, digest.scheduled_for


def digest_count() -> int:
    with db.session_scope() as session:
        return len(session.scalars(select(Digest.id)).all())


def test_the_cli_reads_since_and_at_on_the_newsletters_clock(macau: str, redis_broker: str) -> None:
    url = macau
    sent = newsletter_cli(
        "digest",
        "send",
        "--newsletter",
        "macau",
        "--since",
        "2026-11-25T08:00",
        "--at",
        "2099-01-15T09:30",
        "--json",
        database_url=url,
    )
    assert sent.returncode == 0, sent.stderr
    since, send_at = stored_digest(json.loads(sent.stdout)["id"])
    assert since == datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    assert send_at == datetime(2099, 1, 15, 1, 30, tzinfo=UTC)
    # A time with its own offset is taken as given.
    given = newsletter_cli(
        "digest",
        "send",
        "--newsletter",
        "macau",
        "--since",
        "2026-11-25T08:00Z",
        "--json",
        database_url=url,
    )
    assert given.returncode == 0, given.stderr
    assert stored_digest(json.loads(given.stdout)["id"])[0] == datetime(
        2026, 11, 25, 8, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--since", "yesterday"], "--since is not a date and time"),
        (["--at", "2099-13-01T09:30"], "--at is not a date and time"),
        # Lisbon's clocks go from 01:00 to 02:00 on 29 March 2099.
        (["--at", "2099-03-29T01:30"], "does not exist in Europe/Lisbon"),
        (["--since", "0001-01-01T00:30"], "between 1970 and 9000"),
    ],
)
def test_the_cli_refuses_a_time_it_cannot_read_in_one_line(
    clean_db: str, redis_broker: str, args: list[str], words: str
) -> None:
    url = clean_db
    refused = newsletter_cli("digest", "send", *args, database_url=url)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], refused.stderr
    assert digest_count() == 0


def test_the_cli_preview_reads_since_on_the_newsletters_clock(macau: str) -> None:
    url = macau
    previewed = newsletter_cli(
        "digest",
        "preview",
        "--newsletter",
        "macau",
        "--since",
        "2999-01-01T08:00",
        database_url=url,
    )
    assert previewed.returncode != 0
    # Read on Macau's clock, and said on it: taken as UTC, 08:00 would read 16:00.
    assert "between 2999-01-01 08:00 Asia/Macau (UTC+8) and" in previewed.stderr, previewed.stderr


@pytest.fixture
def api(macau: str, redis_broker: str) -> Iterator[TestClient]:
    from newsletter.web.app import create_app

    with TestClient(create_app()) as client:
        client.headers["Authorization"] = f"Bearer {get_settings().admin_token}"
        yield client


def test_the_api_reads_since_and_send_at_on_the_newsletters_clock(api: TestClient) -> None:
    created = api.post(
        "/api/digests",
        json={"newsletter": "macau", "since": "2026-11-25T08:00", "send_at": "2099-01-15T09:30"},
    )
    assert created.status_code == 201, created.text
    since, send_at = stored_digest(created.json()["id"])
    assert since == datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    assert send_at == datetime(2099, 1, 15, 1, 30, tzinfo=UTC)
    given = api.post(
        "/api/digests", json={"newsletter": "macau", "since": "2026-11-25T08:00+08:00"}
    )
    assert given.status_code == 201, given.text
    assert stored_digest(given.json()["id"])[0] == datetime(2026, 11, 25, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        # Lisbon's clocks go from 01:00 to 02:00 on 29 March 2099.
        ({"send_at": "2099-03-29T01:30"}, "does not exist in Europe/Lisbon"),
        ({"since": "9999-12-31T23:30-03:00"}, "between 1970 and 9000"),
    ],
)
def test_the_api_refuses_a_time_it_cannot_read_in_words(
    api: TestClient, fields: dict[str, str], words: str
) -> None:
    refused = api.post("/api/digests", json={"newsletter": "daily", **fields})
    assert refused.status_code == 422, refused.text
    assert words in refused.json()["detail"]
    assert digest_count() == 0


def test_the_api_preview_reads_since_on_the_newsletters_clock(api: TestClient) -> None:
    previewed = api.get("/api/digests/preview?newsletter=macau&since=2999-01-01T08:00")
    assert previewed.status_code == 409
    assert "between 2999-01-01 08:00 Asia/Macau (UTC+8) and" in previewed.json()["detail"]


def _parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _part(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None
    return str(part.get_content())
