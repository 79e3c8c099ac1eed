"""Stories that matter first: with the newsletter's click order on, each reader's stories
follow the editor's pins and priority, then what readers of their language clicked most
lately (counts only, machine clicks left out); off, the newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import DigestVariant, LinkEvent
from newsletter.digests import lifecycle
from newsletter.digests import render as digests
from newsletter.subscribers.newsletters import get_by_slug, set_click_order
from tests.factories import add_article

NOW = datetime.now(UTC)


def clicks(article_id: int, readers: int, *, language: str = "en", machine: int = 0) -> None:
    """Recorded clicks of `readers` copies (and machines') on one story, an hour ago."""
    with db.session_scope() as session:
        digest = lifecycle.create_digest(session, newsletter_slug="daily", draft=True)
        variant = DigestVariant(digest_id=digest.id, key="k", language=language, article_ids=[])
        session.add(variant)
        session.flush()
        for n in range(readers + machine):
            session.add(
                LinkEvent(
                    kind="click",
                    digest_id=digest.id,
                    variant_id=variant.id,
                    article_id=article_id,
                    language=language,
                    copy_key=f"c:{article_id}-{n}",
                    machine=n >= readers,
                    reason="burst" if n >= readers else None,
                    occurred_at=NOW - timedelta(hours=1),
                )
            )
        session.commit()


def order_for(language: str) -> list[int]:
    with db.session_scope() as session:
        preview = digests.preview(
            session, newsletter_slug="daily", settings=get_settings(), language=language
        )
    return list(preview.selection.article_ids)


def test_stories_follow_pins_and_priority_then_readers_clicks_in_their_language(
    clean_db: str,
) -> None:
    newest = add_article("Newest", hours_ago=1)
    middle = add_article("Middle", hours_ago=2)
    oldest = add_article("Oldest", hours_ago=3)
    urgent = add_article("Urgent", hours_ago=4)
    with db.session_scope() as session:
        from newsletter.articles.store import set_priority

        set_priority(session, article_id=urgent, priority=5)
        session.commit()
    clicks(oldest, 3, machine=20)
    clicks(middle, 1, machine=0)
    clicks(newest, 5, language="zh")  # Chinese readers' clicks say nothing of English ones
    clicks(newest, 0, machine=9)  # nor do machines'

    assert order_for("en") == [urgent, newest, middle, oldest]  # the order is off
    with db.session_scope() as session:
        set_click_order(session, slug="daily", on=True)
        session.commit()
    assert order_for("en") == [urgent, oldest, middle, newest]
    # No clicks in Portuguese: newest first, after the editor's priority.
    assert order_for("pt") == [urgent, newest, middle, oldest]
    with db.session_scope() as session:
        assert get_by_slug(session, "daily").order_by_clicks is True


def test_the_preview_says_when_stories_follow_readers_clicks(clean_db: str) -> None:
    from fastapi.testclient import TestClient

    from newsletter.web.app import create_app
    from tests.integration.test_admin_auth import sign_in

    add_article("Newest", hours_ago=1)
    with db.session_scope() as session:
        digest_id = lifecycle.create_digest(session, newsletter_slug="daily", draft=True).id
    with TestClient(create_app()) as client:
        csrf = sign_in(client)
        assert "click-order" not in client.get(f"/admin/digests/{digest_id}/preview").text
        saved = client.post(
            "/admin/newsletters/daily/order", data={"csrf_token": csrf, "order": "clicks"}
        )
        assert (
            "then by readers&#39; clicks" in saved.text or "then by readers' clicks" in saved.text
        )
        assert "click-order" in client.get(f"/admin/digests/{digest_id}/preview").text
