"""Per-reader records of clicks, only with the publisher's setting and the reader's
consent: the reader sees and refuses them on the preferences page, finds them in their
data export, and erasure deletes them. With the setting off, nothing names a reader."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.analytics.buffer import hit_buffer
from newsletter.app import pipeline
from newsletter.core import db
from newsletter.core.config import Settings, get_settings
from newsletter.core.models import LinkEvent, Subscriber
from newsletter.core.tokens import Purpose, make_reader_token
from newsletter.digests import lifecycle
from newsletter.digests import render as digests
from newsletter.subscribers import store as subscribers
from tests.factories import add_article, add_reader

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


@pytest.fixture
def client(clean_db: str) -> Iterator[TestClient]:
    from newsletter.web.app import create_app

    hit_buffer(get_settings()).drain()
    with TestClient(create_app(), base_url="http://newsletter.test") as test_client:
        yield test_client


def tracking(*, readers: bool) -> Settings:
    return get_settings().model_copy(update={"track_clicks": True, "track_readers": readers})


def a_copy(reader_id: int, settings: Settings) -> EmailMessage:
    """The reader's copy of a digest of the recent articles, as a batch renders it."""
    with db.session_scope() as session:
        digest = lifecycle.create_digest(session, newsletter_slug="daily")
        digest.since, digest.until = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC)
        reader = session.get(Subscriber, reader_id)
        assert reader is not None
        batch = digests.render_for_readers(
            session,
            digest=digest,
            subscribers=[reader],
            settings=settings,
            delivery_ids={reader_id: 900 + digest.id},
        )
        session.commit()
    message = message_from_bytes(batch.messages[reader_id].data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def first_story_link(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    match = re.search(r'href="http://newsletter\.test(/r/[^"]+)"', str(part.get_content()))
    assert match
    return match.group(1).replace("&amp;", "&")


def click_and_record(client: TestClient, link: str, settings: Settings) -> list[LinkEvent]:
    client.get(link, headers={"User-Agent": BROWSER}, follow_redirects=False)
    client.app.state.hits.flush()  # type: ignore[attr-defined]
    pipeline.record_link_hits(buffer=hit_buffer(settings), settings=settings, now=time.time() + 60)
    with db.session_scope() as session:
        found = list(session.scalars(select(LinkEvent).order_by(LinkEvent.id)))
        session.expunge_all()
        return found


def preferences(reader_id: int) -> str:
    return "/preferences/" + make_reader_token(
        get_settings().secret_key, Purpose.PREFERENCES, reader_id, 0
    )


def test_without_the_setting_a_click_names_nobody_and_the_page_says_so(
    client: TestClient,
) -> None:
    add_article("Macau reopens the bridge", url="https://news.example/bridge")
    ana = add_reader("ana@example.com")
    settings = tracking(readers=False)
    link = first_story_link(a_copy(ana, settings))
    assert "?c=" in link and "?r=" not in link
    (event,) = click_and_record(client, link, settings)
    assert event.subscriber_id is None and event.copy_key.startswith("c:")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEWSLETTER_TRACK_CLICKS", "true")
        get_settings.cache_clear()
        page = client.get(preferences(ana)).text
    get_settings.cache_clear()
    assert "nothing links a click to you" in page
    assert "Stop recording my clicks" not in page


def test_with_consent_a_readers_clicks_are_theirs_to_see_refuse_and_erase(
    client: TestClient,
) -> None:
    bridge = add_article("Macau reopens the bridge", url="https://news.example/bridge")
    ana = add_reader("ana@example.com")
    bia = add_reader("bia@example.com")
    settings = tracking(readers=True)
    link = first_story_link(a_copy(ana, settings))
    assert "?r=" in link
    (event,) = click_and_record(client, link, settings)
    assert event.subscriber_id == ana and event.copy_key.startswith("d:")

    with db.session_scope() as session:
        exported = subscribers.export_data(session, subscriber_id=ana)
    assert exported["records_refused"] is False
    [record] = exported["clicks_and_opens"]
    assert (record["kind"], record["story"], record["machine"]) == (
        "click",
        "Macau reopens the bridge",
        False,
    )

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEWSLETTER_TRACK_CLICKS", "true")
        patch.setenv("NEWSLETTER_TRACK_READERS", "true")
        get_settings.cache_clear()
        page = client.get(preferences(ana)).text
        assert "we record under your address which story and when" in page
        refused = client.post(preferences(ana) + "/records", data={"records": "off"})
        assert refused.status_code == 200 and "Your choice is saved." in refused.text
        assert "Record my clicks again" in refused.text
    get_settings.cache_clear()
    # Refused: what was recorded as hers is gone, and the same link now names nobody.
    after = click_and_record(client, link, settings)
    assert [e.subscriber_id for e in after] == [None]
    assert after[0].article_id == bridge and after[0].copy_key.startswith("c:")
    with db.session_scope() as session:
        assert subscribers.export_data(session, subscriber_id=ana)["clicks_and_opens"] == []

    # Bia allowed it; erasing her deletes her clicks, and nobody else's.
    bias = click_and_record(client, first_story_link(a_copy(bia, settings)), settings)
    assert [e.subscriber_id for e in bias] == [None, bia]
    with db.session_scope() as session:
        subscribers.erase(session, subscriber_id=bia)
        session.commit()
        left = list(session.scalars(select(LinkEvent.subscriber_id)))
    assert left == [None]


def test_clicks_are_kept_as_long_as_the_setting_says_and_counted_for_operators(
    client: TestClient,
) -> None:
    from newsletter.analytics import recording
    from newsletter.ops import gauges
    from tests.integration.test_monitoring import _samples

    add_article("Macau reopens the bridge", url="https://news.example/bridge")
    ana = add_reader("ana@example.com")
    settings = tracking(readers=False)
    with db.session_scope() as session:
        before = _samples(gauges.render_metrics(session, settings)[0])
    (recent,) = click_and_record(client, first_story_link(a_copy(ana, settings)), settings)
    with db.session_scope() as session:
        after = _samples(gauges.render_metrics(session, settings)[0])
    key = ("newsletter_link_hits_total", (("kind", "click"), ("who", "reader")))
    assert after[key] - before.get(key, 0.0) == 1

    with db.session_scope() as session:
        old = session.get(LinkEvent, recent.id)
        assert old is not None
        session.add(
            LinkEvent(
                kind=old.kind,
                digest_id=old.digest_id,
                variant_id=old.variant_id,
                article_id=old.article_id,
                language=old.language,
                copy_key="c:from-long-ago",
                machine=False,
                occurred_at=datetime.now(UTC) - timedelta(days=settings.analytics_days + 1),
            )
        )
        session.commit()
        assert recording.purge_old(session, settings=settings) == 1
        session.commit()
        assert [e.id for e in session.scalars(select(LinkEvent))] == [recent.id]
