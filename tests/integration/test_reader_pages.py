"""The reader's pages, finished (issue 13): the signup form, the answer to a repeated
signup, the preferences (zones, every edit kept on a refusal, leaving everything), the
unsubscribe page's way back, an old confirmation link, and each in the reader's language."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from newsletter.core import db
from newsletter.core.clock import utcnow
from newsletter.core.config import get_settings
from newsletter.core.models import (
    EventKind,
    Newsletter,
    Subscriber,
    SubscriberEvent,
    Subscription,
    SubscriptionStatus,
)
from newsletter.core.tokens import Purpose, make_reader_token, make_token
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.newsletters import get_by_slug
from newsletter.web.app import create_app
from tests.conftest import Mailbox, wait_until_tasks_done
from tests.factories import add_article, add_reader, link_token
from tests.fakes import RecordingQueue

ADDRESS = "leitora@example.com"
# How a browser posts a form and asks for a page (a mail client's one-click POST does not).
AS_A_PERSON = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def client(clean_db: str, redis_broker: str, queue: RecordingQueue) -> Iterator[TestClient]:
    with TestClient(create_app(queue=queue)) as test_client:
        yield test_client


def statuses(reader: int) -> dict[str, str]:
    """The reader's subscriptions' statuses, by newsletter slug."""
    with db.session_scope() as session:
        rows = session.execute(
            select(Newsletter.slug, Subscription.status)
            .join(Subscription, Subscription.newsletter_id == Newsletter.id)
            .where(Subscription.subscriber_id == reader)
        )
        return {slug: str(status) for slug, status in rows}


def events(email: str, kind: EventKind) -> list[dict[str, object]]:
    with db.session_scope() as session:
        return [
            dict(event.detail)
            for event in session.scalars(
                select(SubscriberEvent)
                .join(Subscriber)
                .where(Subscriber.email_key == email.lower(), SubscriberEvent.kind == kind)
                .order_by(SubscriberEvent.id)
            )
        ]


def set_reader(reader: int, **fields: object) -> None:
    with db.session_scope() as session:
        subscriber = subscribers.get_subscriber(session, reader)
        for name, value in fields.items():
            setattr(subscriber, name, value)


def second_newsletter() -> int:
    with db.session_scope() as session:
        newsletter = Newsletter(slug="macau", name="Macau weekly")
        session.add(newsletter)
        session.flush()
        return newsletter.id


def subscribe_to(reader: int, newsletter_id: int) -> None:
    with db.session_scope() as session:
        session.add(
            Subscription(
                subscriber_id=reader,
                newsletter_id=newsletter_id,
                status=SubscriptionStatus.SUBSCRIBED,
                consent_source="test",
            )
        )


def unsubscribe_token(reader: int, newsletter_slug: str | None = "daily") -> str:
    newsletter_id = None
    if newsletter_slug is not None:
        with db.session_scope() as session:
            newsletter_id = get_by_slug(session, newsletter_slug).id
    return make_token(get_settings().secret_key, Purpose.UNSUBSCRIBE, reader, newsletter_id)


def field_value(html: str, field: str) -> str:
    match = re.search(rf'<input id="{field}" name="{field}"[^>]*value="([^"]*)"', html)
    assert match, field
    return match.group(1)


# --- The signup form -------------------------------------------------------------------


def test_the_signup_form_preselects_the_pages_language_and_lists_the_zones(
    client: TestClient,
) -> None:
    page = client.get("/?lang=pt")
    assert page.status_code == 200
    assert '<html lang="pt-PT">' in page.text and "Subscrever" in page.text
    assert re.search(r'<option value="pt" lang="pt"\s+selected>', page.text)
    assert not re.search(r'<option value="en" lang="en"\s+selected>', page.text)
    # The zone field: editable, searchable, empty without a script (then the default).
    assert field_value(page.text, "time_zone") == ""
    assert 'list="zones"' in page.text
    assert '<option value="Asia/Macau">Asia/Macau (UTC+8)</option>' in page.text
    # The script that proposes the browser's zone is the one the policy allows.
    assert "resolvedOptions().timeZone" in page.text


def test_unticking_every_newsletter_is_refused_in_words_and_the_form_kept(
    client: TestClient, queue: RecordingQueue
) -> None:
    # What our page sends with no newsletter ticked: only the list's empty marker.
    refused = client.post(
        "/subscribe",
        data={
            "email": ADDRESS,
            "name": "Leitora",
            "newsletters": "",
            "language": "zh",
            "time_zone": "Asia/Macau",
        },
    )
    assert refused.status_code == 422
    assert "Choose at least one newsletter" in refused.text
    assert 'id="newsletters-error"' in refused.text  # next to the list
    assert field_value(refused.text, "email") == ADDRESS
    assert field_value(refused.text, "name") == "Leitora"
    assert field_value(refused.text, "time_zone") == "Asia/Macau"
    assert re.search(r'<option value="zh" lang="zh"\s+selected>', refused.text)
    assert re.search(r'name="newsletters" value="daily"\s*>', refused.text)  # left unticked
    # In the rule, not only the page: JSON callers too.
    as_json = client.post("/subscribe", json={"email": ADDRESS, "newsletters": []})
    assert as_json.status_code == 422 and as_json.json()["field"] == "newsletters"
    assert "at least one newsletter" in as_json.json()["detail"]
    assert queue.jobs == []
    # A caller that does not name newsletters at all still gets the default one.
    assert client.post("/subscribe", json={"email": ADDRESS}).status_code == 202
    assert [job.task for job in queue.jobs] == ["newsletter.sign_up"]


@pytest.mark.usefixtures("worker")
def test_a_repeated_signup_gets_the_same_true_answer_and_is_recorded(
    clean_db: str, redis_broker: str, mailbox: Mailbox
) -> None:
    with TestClient(create_app()) as client:
        first = client.post("/subscribe", data={"email": ADDRESS, "newsletters": ["", "daily"]})
        wait_until_tasks_done()
        again = client.post("/subscribe", data={"email": ADDRESS, "newsletters": ["", "daily"]})
        wait_until_tasks_done()
        stranger = client.post("/subscribe", data={"email": "new@example.com"})
        wait_until_tasks_done()
    # One answer for everyone (invariant 5), and it tells the truth about the interval.
    assert first.status_code == again.status_code == stranger.status_code == 202
    assert first.text == again.text == stranger.text
    assert "no second one is sent for a while" in first.text and "spam folder" in first.text
    assert len(mailbox.to(ADDRESS)) == 1  # no second confirmation within the interval
    assert events(ADDRESS, EventKind.SIGNUP_REPEATED) == [
        {"source": "web", "newsletters": ["daily"], "confirmation": "within the interval"}
    ]
    assert events("new@example.com", EventKind.SIGNUP_REPEATED) == []


# --- An old confirmation link ----------------------------------------------------------


def test_an_old_confirmation_link_after_an_unsubscribe_says_not_subscribed(
    client: TestClient,
) -> None:
    reader = add_reader(ADDRESS, confirmed=False, language="pt")
    confirm = f"/confirm/{link_token(Purpose.CONFIRM, reader)}"
    assert "Subscrição confirmada" in client.get(confirm).text
    client.post(f"/unsubscribe/{unsubscribe_token(reader)}")
    assert statuses(reader) == {"daily": SubscriptionStatus.UNSUBSCRIBED}

    again = client.get(confirm)
    assert again.status_code == 200
    assert "Não tem subscrição" in again.text and '<html lang="pt-PT">' in again.text
    assert "a ligação já não volta a subscrevê-lo" in again.text
    assert '<a href="/">Voltar a subscrever</a>' in again.text
    assert statuses(reader) == {"daily": SubscriptionStatus.UNSUBSCRIBED}  # not brought back


def test_a_confirmation_link_made_before_leaving_does_not_subscribe_again(
    client: TestClient,
) -> None:
    """Pending, left, signed up again: the first link does not confirm the new signup."""
    reader = add_reader(ADDRESS, confirmed=False)
    old_link = f"/confirm/{link_token(Purpose.CONFIRM, reader)}"
    client.post(f"/unsubscribe/{unsubscribe_token(reader)}")
    with db.session_scope() as session:
        # Left a minute after the link was made (a token's time is in whole seconds).
        session.scalars(select(Subscription)).one().unsubscribed_at = utcnow() + timedelta(
            minutes=1
        )
    with db.session_scope() as session:
        subscribers.subscribe(
            session,
            subscribers.SignupForm(email=ADDRESS),
            source="web",
            default_language="en",
            default_time_zone="Europe/Lisbon",
            confirmation_interval=timedelta(minutes=10),
        )
    assert statuses(reader) == {"daily": SubscriptionStatus.PENDING}
    page = client.get(old_link)
    assert page.status_code == 200 and "Subscription confirmed" not in page.text
    assert statuses(reader) == {"daily": SubscriptionStatus.PENDING}


# --- The unsubscribe page --------------------------------------------------------------


def test_the_unsubscribe_page_names_the_address_and_the_newsletter_and_the_way_back(
    client: TestClient, queue: RecordingQueue
) -> None:
    reader = add_reader(ADDRESS)
    token = unsubscribe_token(reader)
    asked = client.get(f"/unsubscribe/{token}")
    assert asked.status_code == 200
    assert ADDRESS in asked.text and "Daily digest" in asked.text
    assert statuses(reader) == {"daily": SubscriptionStatus.SUBSCRIBED}  # a GET changes nothing

    left = client.post(f"/unsubscribe/{token}", headers=AS_A_PERSON)
    assert left.status_code == 200 and "You are unsubscribed" in left.text
    assert ADDRESS in left.text and "Daily digest" in left.text
    assert f'action="/unsubscribe/{token}/resubscribe"' in left.text
    assert re.search(r'href="/preferences/[^"]+"', left.text)
    assert statuses(reader) == {"daily": SubscriptionStatus.UNSUBSCRIBED}

    # The way back is a POST with the token: a mail scanner's GET brings nobody back.
    assert client.get(f"/unsubscribe/{token}/resubscribe").status_code == 405
    back = client.post(f"/unsubscribe/{token}/resubscribe")
    assert back.status_code == 200 and "Welcome back" in back.text
    assert f"{ADDRESS} is subscribed to Daily digest again." in back.text
    assert statuses(reader) == {"daily": SubscriptionStatus.SUBSCRIBED}
    assert [e["source"] for e in events(ADDRESS, EventKind.CONFIRMED)][-1] == "unsubscribe page"


def test_the_unsubscribe_link_takes_back_only_a_recent_unsubscribe(client: TestClient) -> None:
    reader = add_reader(ADDRESS)
    token = unsubscribe_token(reader)
    client.post(f"/unsubscribe/{token}")
    with db.session_scope() as session:
        session.scalars(select(Subscription)).one().unsubscribed_at = utcnow() - timedelta(days=2)
    page = client.get(f"/unsubscribe/{token}")
    assert "/resubscribe" not in page.text and '<a href="/">Subscribe again</a>' in page.text
    late = client.post(f"/unsubscribe/{token}/resubscribe")
    assert late.status_code == 200 and "of the last day" in late.text
    assert statuses(reader) == {"daily": SubscriptionStatus.UNSUBSCRIBED}


def test_taking_back_an_unsubscribe_restores_only_what_it_ended(client: TestClient) -> None:
    reader = add_reader(ADDRESS)
    subscribe_to(reader, second_newsletter())
    # An hour ago the reader left Macau weekly on purpose; now they leave everything.
    client.post(f"/unsubscribe/{unsubscribe_token(reader, 'macau')}")
    with db.session_scope() as session:
        macau = session.scalars(
            select(Subscription).where(
                Subscription.newsletter_id == get_by_slug(session, "macau").id
            )
        ).one()
        macau.unsubscribed_at = utcnow() - timedelta(hours=1)
    everything = unsubscribe_token(reader, None)
    client.post(f"/unsubscribe/{everything}", headers=AS_A_PERSON)
    assert set(statuses(reader).values()) == {SubscriptionStatus.UNSUBSCRIBED}

    back = client.post(f"/unsubscribe/{everything}/resubscribe", headers=AS_A_PERSON)

    assert back.status_code == 200
    assert statuses(reader) == {
        "daily": SubscriptionStatus.SUBSCRIBED,
        "macau": SubscriptionStatus.UNSUBSCRIBED,
    }


def test_after_a_revocation_the_unsubscribe_page_opens_no_preferences(
    client: TestClient,
) -> None:
    reader = add_reader(ADDRESS)
    set_reader(reader, token_version=1)  # links revoked from the dashboard
    left = client.post(f"/unsubscribe/{unsubscribe_token(reader)}", headers=AS_A_PERSON)
    assert left.status_code == 200 and "/preferences/" not in left.text


def test_the_one_click_post_stays_cookie_less_and_page_free_of_the_reader(
    client: TestClient,
) -> None:
    reader = add_reader(ADDRESS)
    one_click = client.post(
        f"/unsubscribe/{unsubscribe_token(reader)}", data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200 and "set-cookie" not in one_click.headers
    assert ADDRESS not in one_click.text
    assert statuses(reader) == {"daily": SubscriptionStatus.UNSUBSCRIBED}


# --- The preferences page --------------------------------------------------------------


def test_an_invalid_zone_keeps_every_other_edit_and_saves_nothing(client: TestClient) -> None:
    reader = add_reader(ADDRESS, name="Leitora")
    set_reader(reader, time_zone="Asia/Macau")
    token = link_token(Purpose.PREFERENCES, reader)
    refused = client.post(
        f"/preferences/{token}",
        data={"name": "Leitora Nova", "language": "zh", "time_zone": "Mars/Olympus"},
    )
    assert refused.status_code == 422
    # Said next to the field, in words.
    assert re.search(r'id="time_zone-error" role="alert">[^<]*not a time zone', refused.text)
    # Every other edit kept on the form: the name, the language, no newsletter ticked.
    assert field_value(refused.text, "name") == "Leitora Nova"
    assert field_value(refused.text, "time_zone") == "Mars/Olympus"
    assert re.search(r'<option value="zh" lang="zh"\s+selected>', refused.text)
    assert not re.search(r'value="daily"\s+checked', refused.text)
    # Nothing saved.
    with db.session_scope() as session:
        stored = subscribers.get_subscriber(session, reader)
        assert (stored.name, stored.language, stored.time_zone) == (
            "Leitora",
            "en",
            "Asia/Macau",
        )
    assert statuses(reader) == {"daily": SubscriptionStatus.SUBSCRIBED}

    # An unknown language: said next to the language, the zone edit kept.
    refused = client.post(
        f"/preferences/{token}",
        data={"name": "Leitora", "language": "xx", "time_zone": "Europe/Lisbon"},
    )
    assert refused.status_code == 422 and 'id="language-error"' in refused.text
    assert field_value(refused.text, "time_zone") == "Europe/Lisbon"


def test_the_preferences_zone_is_labelled_and_searchable(client: TestClient) -> None:
    reader = add_reader(ADDRESS)
    set_reader(reader, time_zone="Asia/Macau")
    page = client.get(f"/preferences/{link_token(Purpose.PREFERENCES, reader)}")
    assert field_value(page.text, "time_zone") == "Asia/Macau"
    assert "Now: Asia/Macau (UTC+8)." in page.text
    assert 'list="zones"' in page.text and '<datalist id="zones">' in page.text
    assert '<option value="America/Sao_Paulo">America/Sao_Paulo (UTC-3)</option>' in page.text
    saved = client.post(
        f"/preferences/{link_token(Purpose.PREFERENCES, reader)}",
        data={"newsletters": "daily", "time_zone": "America/Sao_Paulo"},
    )
    assert saved.status_code == 200 and "Now: America/Sao_Paulo (UTC-3)." in saved.text


def test_unsubscribe_from_everything_leaves_every_newsletter_with_a_goodbye(
    client: TestClient, queue: RecordingQueue
) -> None:
    reader = add_reader(ADDRESS)
    subscribe_to(reader, second_newsletter())
    token = link_token(Purpose.PREFERENCES, reader)
    page = client.get(f"/preferences/{token}")
    assert f'action="/preferences/{token}/leave"' in page.text
    left = client.post(f"/preferences/{token}/leave")
    assert left.status_code == 200
    assert f"{ADDRESS} will receive none of our newsletters any more." in left.text
    assert f'href="/preferences/{token}"' in left.text  # the way back
    assert statuses(reader) == {
        "daily": SubscriptionStatus.UNSUBSCRIBED,
        "macau": SubscriptionStatus.UNSUBSCRIBED,
    }
    assert {e["source"] for e in events(ADDRESS, EventKind.UNSUBSCRIBED)} == {"web"}
    if get_settings().send_goodbye:
        [(goodbye_reader, newsletter_ids)] = queue["send_goodbye"]
        assert goodbye_reader == reader and len(newsletter_ids) == 2


# --- In the reader's language ----------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "tag", "preferences", "unsubscribe", "erase"),
    [
        ("pt", "pt-PT", "As suas preferências", "Cancelar a subscrição", "Apagar os seus dados"),
        ("zh", "zh-Hans", "您的偏好设置", "退订", "删除您的数据"),
    ],
)
def test_the_readers_pages_speak_their_language(
    client: TestClient, language: str, tag: str, preferences: str, unsubscribe: str, erase: str
) -> None:
    reader = add_reader(ADDRESS, language=language)
    # The browser asks for English: a reader's own pages follow their stored language.
    english = {"Accept-Language": "en"}
    pages = {
        preferences: f"/preferences/{link_token(Purpose.PREFERENCES, reader)}",
        unsubscribe: f"/unsubscribe/{unsubscribe_token(reader)}",
        erase: f"/erase/{make_reader_token(get_settings().secret_key, Purpose.ERASE, reader, 0)}",
    }
    for phrase, path in pages.items():
        response = client.get(path, headers=english)
        assert response.status_code == 200, path
        assert f'<html lang="{tag}">' in response.text, path
        assert phrase in response.text, path
    left = client.post(
        f"/unsubscribe/{unsubscribe_token(reader)}", headers={**AS_A_PERSON, **english}
    )
    assert f'<html lang="{tag}">' in left.text
    assert {"pt": "deixará de receber", "zh": "将不再收到"}[language] in left.text


def test_a_line_break_in_the_zone_is_said_next_to_the_zone(client: TestClient) -> None:
    refused = client.post(
        "/subscribe", data={"email": ADDRESS, "newsletters": ["", "daily"], "time_zone": "A\nB"}
    )
    assert refused.status_code == 422
    assert re.search(r'id="time_zone-error" role="alert">[^<]*line breaks', refused.text)


# --- The topics on offer ---------------------------------------------------------------


def test_the_topics_on_offer_are_kept_between_page_views_and_follow_our_own_changes(
    client: TestClient,
) -> None:
    add_article("The bridge reopens", topics=["macau"])
    preferences = f"/preferences/{link_token(Purpose.PREFERENCES, add_reader(ADDRESS))}"
    reads: list[str] = []

    def count_article_reads(*args: object) -> None:
        statement = str(args[2])
        if statement.startswith("SELECT articles.topics \nFROM articles"):
            reads.append(statement)

    engine = db.get_engine()
    event.listen(engine, "before_cursor_execute", count_article_reads)
    try:
        assert "macau" in client.get("/").text
        assert "macau" in client.get("/").text
        assert "macau" in client.get(preferences).text
        assert len(reads) == 1  # one read of the articles for three page views
        # An article stored here, once committed, is offered at the next view.
        add_article("A new market", topics=["economia"])
        assert "economia" in client.get("/").text
        assert len(reads) == 2
    finally:
        event.remove(engine, "before_cursor_execute", count_article_reads)
