"""An article taken down (hidden) leaves every public page: its own, the web copies of the
digests it went out in, and the topics offered to readers. (Issue 14, item 9.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from newsletter.articles import store as article_store
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Article, Digest, DigestState, DigestVariant
from newsletter.core.tokens import Purpose, make_token
from newsletter.subscribers.newsletters import get_by_slug
from newsletter.web.app import create_app
from tests.factories import add_article, add_reader
from tests.fakes import RecordingQueue


@pytest.fixture
def client(clean_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(queue=RecordingQueue())) as test_client:
        yield test_client


def sent_digest(*article_ids: int) -> int:
    """A digest that went out with these articles, in one variant."""
    now = datetime.now(UTC)
    with db.session_scope() as session:
        digest = Digest(
            newsletter_id=get_by_slug(session, "daily").id,
            state=DigestState.SENT,
            since=now - timedelta(days=1),
            until=now,
            started_at=now,
        )
        session.add(digest)
        session.flush()
        session.add(
            DigestVariant(
                digest_id=digest.id, key="k", language="en", article_ids=list(article_ids)
            )
        )
        return digest.id


def hide(article_id: int) -> str:
    """Take the article down, as the dashboard's Hide button does; its slug."""
    with db.session_scope() as session:
        return article_store.set_hidden(session, article_id=article_id, hidden=True).slug


def test_a_hidden_article_leaves_the_web_copies_of_digests(client: TestClient) -> None:
    kept = add_article("The bridge reopens", topics=["macau"])
    taken_down = add_article(
        "A story we took down", topics=["lawsuit"], url="https://news.example/taken-down"
    )
    local = add_article("A story of our own, taken down", topics=["lawsuit"])
    digest = sent_digest(taken_down, kept, local)
    before = client.get(f"/digests/{digest}")
    assert before.status_code == 200 and "A story we took down" in before.text
    with db.session_scope() as session:
        article = session.get(Article, local)
        assert article is not None
        local_slug = article.slug
    assert f"/articles/{local_slug}" in before.text

    hide(taken_down)
    hide(local)
    after = client.get(f"/digests/{digest}")
    assert after.status_code == 200
    assert "The bridge reopens" in after.text
    for gone in ("A story we took down", "news.example/taken-down", "A story of our own"):
        assert gone not in after.text, gone
    assert local_slug not in after.text
    assert client.get(f"/articles/{local_slug}").status_code == 404

    # Every article of the digest taken down: no public copy is left.
    hide(kept)
    assert client.get(f"/digests/{digest}").status_code == 404


def test_a_topic_known_only_from_hidden_articles_is_not_offered(client: TestClient) -> None:
    add_article("The bridge reopens", topics=["macau"])
    hide(add_article("A story we took down", topics=["lawsuit", "macau"]))
    signup = client.get("/")
    assert "macau" in signup.text and "lawsuit" not in signup.text
    reader = add_reader("ana@example.com")
    token = make_token(get_settings().secret_key, Purpose.PREFERENCES, reader)
    preferences = client.get(f"/preferences/{token}")
    assert "macau" in preferences.text and "lawsuit" not in preferences.text
