"""The public archive and its Atom feed: sent digests only, newest first, in the visitor's
language, never a hidden article; and a call to subscribe wherever a forward may land."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import feedparser
import pytest
from fastapi.testclient import TestClient

from newsletter.articles.store import set_hidden
from newsletter.core import db
from newsletter.core.models import Article, Digest, DigestState, DigestVariant
from newsletter.subscribers.newsletters import get_by_slug
from tests.factories import add_article

NOW = datetime.now(UTC)


@pytest.fixture
def client(clean_db: str) -> Iterator[TestClient]:
    from newsletter.web.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def a_digest(
    state: str, copies: dict[str, list[int]], *, days_ago: float, subject: str | None = None
) -> int:
    """A digest of `daily` in this state, with a variant per language (article ids)."""
    with db.session_scope() as session:
        started = NOW - timedelta(days=days_ago)
        digest = Digest(
            newsletter_id=get_by_slug(session, "daily").id,
            state=state,
            subject=subject,
            since=started - timedelta(days=1),
            until=started,
            started_at=started,
            finished_at=started + timedelta(minutes=2),
        )
        session.add(digest)
        session.flush()
        for language, ids in copies.items():
            session.add(
                DigestVariant(
                    digest_id=digest.id, key=f"{language}{ids}", language=language, article_ids=ids
                )
            )
        return digest.id


def test_the_archive_lists_sent_digests_newest_first_in_the_visitors_language(
    client: TestClient,
) -> None:
    bridge_en = add_article("Macau reopens the bridge")
    bridge_pt = add_article("Macau reabre a ponte", language="pt")
    markets = add_article("Markets open higher")
    older = a_digest(DigestState.SENT, {"en": [markets]}, days_ago=3)
    newer = a_digest(DigestState.SENT, {"en": [bridge_en, markets], "pt": [bridge_pt]}, days_ago=1)
    a_digest(DigestState.CANCELLED, {"en": [markets]}, days_ago=2)
    a_digest(DigestState.SCHEDULED, {}, days_ago=0)

    english = client.get("/archive/daily", headers={"Accept-Language": "en"})
    assert english.status_code == 200
    text = english.text
    assert text.index("Macau reopens the bridge — and 1 more") < text.index("Markets open higher")
    assert text.count("<li lang=") == 2  # the cancelled and the scheduled are not listed
    assert f"/digests/{newer}?variant=" in text and f"/digests/{older}?variant=" in text
    assert 'type="application/atom+xml"' in text
    assert 'href="/?newsletter=daily"' in text and "Subscribe to Daily digest" in text

    portuguese = client.get("/archive/daily?lang=pt").text
    assert "Macau reabre a ponte" in portuguese and "Subscrever Resumo diário" in portuguese
    # The older digest went out in English only: listed in English.
    assert "Markets open higher" in portuguese


def test_the_archive_pages_and_refuses_in_words(client: TestClient) -> None:
    story = add_article("A story")
    for n in range(23):
        a_digest(DigestState.SENT, {"en": [story]}, days_ago=30 - n, subject=f"Issue {n:02d}")
    first = client.get("/archive/daily").text
    assert "Issue 22" in first and "Issue 03" in first and "Issue 02" not in first
    assert "Page 1 of 2" in first and 'rel="next"' in first
    second = client.get("/archive/daily?page=2").text
    assert "Issue 02" in second and "Issue 00" in second and 'rel="prev"' in second
    past = client.get("/archive/daily?page=9")
    assert past.status_code == 200 and "the archive has 2 pages" in past.text
    assert client.get("/archive/nope").status_code == 404
    assert "There is no such newsletter." in client.get("/archive/nope").text
    bad = client.get("/archive/daily?page=zero")
    assert bad.status_code == 422


def test_hidden_articles_never_appear_in_the_archive_or_the_feed(client: TestClient) -> None:
    lead = add_article("The story taken down")
    kept = add_article("The story that stays")
    only = add_article("A story alone, taken down")
    a_digest(DigestState.SENT, {"en": [lead, kept]}, days_ago=1)
    gone = a_digest(DigestState.SENT, {"en": [only]}, days_ago=2)
    with db.session_scope() as session:
        set_hidden(session, article_id=lead, hidden=True)
        set_hidden(session, article_id=only, hidden=True)
    page = client.get("/archive/daily").text
    feed = client.get("/archive/daily/feed.xml").text
    for shown in (page, feed):
        assert "taken down" not in shown
        assert "The story that stays" in shown
    assert f"/digests/{gone}?" not in page


def test_the_feed_is_atom_that_a_feed_reader_reads_back(client: TestClient) -> None:
    bridge_en = add_article("Macau reopens the bridge")
    bridge_pt = add_article("Macau reabre a ponte", language="pt")
    digest_id = a_digest(
        DigestState.SENT, {"en": [bridge_en], "pt": [bridge_pt]}, days_ago=1, subject=None
    )
    response = client.get("/archive/daily/feed.xml?lang=pt")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    (entry,) = parsed.entries
    assert entry.title == "Macau reabre a ponte"
    assert f"/digests/{digest_id}?variant=" in entry.link
    assert entry.id.endswith(f"/digests/{digest_id}")
    assert parsed.feed.title.startswith("Resumo diário")
    english = feedparser.parse(client.get("/archive/daily/feed.xml").content)
    assert english.entries[0].title == "Macau reopens the bridge"
    assert english.entries[0].id == entry.id  # one digest, one entry, in any language
    assert client.get("/archive/nope/feed.xml").status_code == 404


def test_a_web_copy_and_an_article_page_invite_to_subscribe_and_the_email_does_not(
    client: TestClient,
) -> None:
    from newsletter.core.config import get_settings
    from newsletter.digests import render

    article_id = add_article("Macau reopens the bridge")
    with db.session_scope() as session:
        article = session.get(Article, article_id)
        assert article is not None
        article.source = "/home/editor/imports/2026-12/bridge.md"
        slug = article.slug
    digest_id = a_digest(DigestState.SENT, {"en": [article_id]}, days_ago=1)
    copy = client.get(f"/digests/{digest_id}").text
    assert "/?newsletter=daily" in copy and "Subscribe to Daily digest" in copy
    with db.session_scope() as session:
        emailed = render.preview(session, newsletter_slug="daily", settings=get_settings())
        assert b"?newsletter=daily" not in emailed.message.data
    page = client.get(f"/articles/{slug}").text
    assert "Subscribe to our newsletters" in page
    assert "/home/editor" not in page and "bridge.md" not in page
    with db.session_scope() as session:
        article = session.get(Article, article_id)
        assert article is not None
        article.source = "https://news.example/bridge"
    assert 'href="https://news.example/bridge"' in client.get(f"/articles/{slug}").text

    signup = client.get("/?newsletter=daily").text
    assert 'value="daily" checked' in signup
    assert client.get("/?newsletter=nope").status_code == 200
    assert client.get("/?newsletter=" + "x" * 5000).status_code == 200  # ignored, not refused
