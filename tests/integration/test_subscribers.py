"""Signup rules on SQLite and PostgreSQL: double opt-in, throttled confirmations, erasure."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from newsletter.core import db
from newsletter.core.clock import utcnow
from newsletter.core.models import (
    EventKind,
    Newsletter,
    Subscriber,
    SubscriberEvent,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from newsletter.core.validation import InvalidInput, email_hash
from newsletter.subscribers import eligibility, newsletters, suppressions
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.store import Preferences, SignupForm

INTERVAL = timedelta(minutes=10)


def signup(email: str = "ana@example.com", **fields: object) -> subscribers.SignupOutcome:
    now = fields.pop("now", None)
    with db.session_scope() as session:
        return subscribers.subscribe(
            session,
            SignupForm(email=email, **fields),  # type: ignore[arg-type]
            source="test",
            ip="192.0.2.1",
            default_language="en",
            default_time_zone="Europe/Lisbon",
            confirmation_interval=INTERVAL,
            now=now,  # type: ignore[arg-type]
        )


def count(model: type) -> int:
    with db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_signup_is_pending_until_confirmed(clean_db: str) -> None:
    outcome = signup(name="Ana", language="pt", topics=["china", "Macau"])
    assert outcome.send_confirmation
    with db.session_scope() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        assert (subscriber.name, subscriber.language, subscriber.topics) == (
            "Ana",
            "pt",
            ["china", "macau"],
        )
        (subscription,) = subscriber.subscriptions
        assert subscription.status == SubscriptionStatus.PENDING
        assert subscription.consent_ip == "192.0.2.1"
        assert not eligibility.can_receive(
            session, subscriber_id=subscriber.id, newsletter_id=subscription.newsletter_id
        )
        assert subscribers.confirm(session, subscriber_id=subscriber.id) == [
            subscription.newsletter_id
        ]
        assert eligibility.can_receive(
            session, subscriber_id=subscriber.id, newsletter_id=subscription.newsletter_id
        )
        kinds = [e.kind for e in subscriber.events]
    assert kinds == [EventKind.SIGNED_UP, EventKind.CONFIRMED]


def test_addresses_are_one_subscriber_whatever_their_case(clean_db: str) -> None:
    signup("Ana@Example.COM")
    signup("ana@example.com", now=utcnow() + INTERVAL * 2)
    assert count(Subscriber) == 1


def test_a_pending_address_gets_at_most_one_confirmation_per_interval(clean_db: str) -> None:
    start = utcnow()
    assert signup(now=start).send_confirmation
    assert not signup(now=start + timedelta(minutes=5)).send_confirmation
    assert signup(now=start + timedelta(minutes=11)).send_confirmation


def test_signing_up_again_does_not_rewrite_a_known_profile(clean_db: str) -> None:
    signup(name="Ana", language="pt")
    signup(name="Mallory", language="zh", now=utcnow() + INTERVAL * 2)
    with db.session_scope() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        assert (subscriber.name, subscriber.language) == ("Ana", "pt")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "a" * 65 + "@example.com"}, "email"),
        ({"email": "a@" + "b" * 250 + ".com"}, "email"),
        ({"email": "ana@example.com\r\nBcc: x@example.com"}, "email"),
        ({"email": "ana@example.com", "name": "Ana\nBcc: x@example.com"}, "name"),
        ({"email": "ana@example.com", "name": "x" * 201}, "name"),
        ({"email": "ana@example.com", "language": "fr"}, "language"),
        ({"email": "ana@example.com", "newsletters": ["weekly"]}, "newsletters"),
        ({"email": "ana@example.com", "topics": ["<script>"]}, "topics"),
        ({"email": "ana@example.com", "time_zone": "Mars/Olympus"}, "time_zone"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    clean_db: str, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        signup(**fields)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert caught.value.message  # a sentence for a person
    assert count(Subscriber) == 0
    assert count(Subscription) == 0


def test_a_suppressed_address_is_not_asked_and_not_stored(clean_db: str) -> None:
    with db.session_scope() as session:
        suppressions.suppress(
            session, email_key="ana@example.com", email="ana@example.com", reason="complaint"
        )
    outcome = signup("ANA@example.com")
    assert outcome.suppressed and not outcome.send_confirmation
    assert count(Subscriber) == 0


def test_unsubscribe_then_signup_again_asks_for_confirmation_again(clean_db: str) -> None:
    outcome = signup()
    assert outcome.subscriber_id is not None
    with db.session_scope() as session:
        subscribers.confirm(session, subscriber_id=outcome.subscriber_id)
        assert subscribers.unsubscribe(session, subscriber_id=outcome.subscriber_id, source="test")
        subscriber = subscribers.get_subscriber(session, outcome.subscriber_id)
        assert not eligibility.can_receive(session, subscriber_id=subscriber.id, newsletter_id=None)
    again = signup(now=utcnow() + INTERVAL * 2)
    assert again.send_confirmation


def test_preferences_change_profile_and_newsletters(clean_db: str) -> None:
    outcome = signup(name="Ana")
    assert outcome.subscriber_id is not None
    with db.session_scope() as session:
        subscribers.confirm(session, subscriber_id=outcome.subscriber_id)
        subscribers.update_preferences(
            session,
            subscriber_id=outcome.subscriber_id,
            preferences=Preferences(
                name="Ana Sousa", language="zh", topics="economia, macau", newsletters=[]
            ),
        )
        subscriber = subscribers.get_subscriber(session, outcome.subscriber_id)
        assert (subscriber.name, subscriber.language, subscriber.topics) == (
            "Ana Sousa",
            "zh",
            ["economia", "macau"],
        )
        assert [s.status for s in subscriber.subscriptions] == [SubscriptionStatus.UNSUBSCRIBED]


def test_erasure_keeps_only_a_hash_on_the_suppression_list(clean_db: str) -> None:
    outcome = signup("Ana@example.com", name="Ana")
    assert outcome.subscriber_id is not None
    with db.session_scope() as session:
        data = subscribers.export_data(session, subscriber_id=outcome.subscriber_id)
        assert data["email"] == "Ana@example.com"
        assert [e["kind"] for e in data["events"]] == ["signed_up"]
        subscribers.erase(session, subscriber_id=outcome.subscriber_id)
    assert count(Subscriber) == count(Subscription) == count(SubscriberEvent) == 0
    with db.session_scope() as session:
        (suppression,) = session.scalars(select(Suppression))
        assert suppression.email is None
        assert suppression.email_hash == email_hash("ana@example.com")
    assert signup("ana@example.com", now=utcnow() + INTERVAL * 2).suppressed
    assert count(Subscriber) == 0


def test_two_inits_at_once_find_the_one_default_newsletter(clean_db: str) -> None:
    """`newsletter init` on several machines at once: the one that loses the race to insert
    the default newsletter finds the other's instead of failing."""
    if not clean_db.startswith("postgresql"):
        pytest.skip("SQLite is one machine's file")
    engine = db.get_engine()
    with engine.begin() as connection:
        connection.execute(delete(Newsletter))
    first = Session(engine)
    made = newsletters.ensure_default_newsletter(first, language="en", time_zone="Asia/Macau").id
    found: list[object] = []

    def second_machine() -> None:
        try:
            with Session(engine) as session:
                found.append(
                    newsletters.ensure_default_newsletter(
                        session, language="pt", time_zone="America/Sao_Paulo"
                    ).id
                )
                session.commit()
        except Exception as exc:
            found.append(exc)

    other = threading.Thread(target=second_machine)
    other.start()
    try:
        # The second insert waits on the first's uncommitted row in the unique index.
        with engine.connect() as watcher:
            waiting = (
                select(func.count())
                .where(text("wait_event_type = 'Lock' AND datname = current_database()"))
                .select_from(text("pg_stat_activity"))
            )
            deadline = time.monotonic() + 10
            while not watcher.scalar(waiting) and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        first.commit()
        first.close()
    other.join(30)
    assert found == [made]
