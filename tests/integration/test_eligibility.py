"""Whether a reader may be mailed: every place that decides it gives the same answer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from newsletter.core import db
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    SubscriberStatus,
)
from newsletter.digests import composer, lifecycle
from newsletter.sending.ledger import Ledger
from newsletter.subscribers import eligibility, suppressions
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.newsletters import get_by_slug
from tests.factories import add_reader

# Each kind of reader, and whether invariant 1 lets them be mailed the newsletter.
READERS = {
    "fine@example.com": True,
    "pending@example.com": False,
    "gone@example.com": False,
    "bounced@example.com": False,
    "complained@example.com": False,
    "suppressed@example.com": False,
    "SHOUTING@Example.com": False,  # suppressed under another capitalisation
}


@pytest.fixture
def readers(clean_db: str) -> dict[str, int]:
    ids = {email: add_reader(email, confirmed=email != "pending@example.com") for email in READERS}
    with db.session_scope() as session:
        subscribers.unsubscribe(session, subscriber_id=ids["gone@example.com"], source="test")
        for email, status in (
            ("bounced@example.com", SubscriberStatus.BOUNCED),
            ("complained@example.com", SubscriberStatus.COMPLAINED),
        ):
            subscribers.get_subscriber(session, ids[email]).status = status
        suppressions.add(session, email="suppressed@example.com")
        suppressions.add(session, email="shouting@example.com")
    return ids


def test_the_check_the_composer_and_the_claim_agree(readers: dict[str, int]) -> None:
    with db.session_scope() as session:
        newsletter_id = get_by_slug(session, "daily").id
        checked = {
            email: eligibility.can_receive(
                session, subscriber_id=subscriber_id, newsletter_id=newsletter_id
            )
            for email, subscriber_id in readers.items()
        }
        walked, _ = composer.eligible_readers(session, newsletter_id=newsletter_id)
        digest = lifecycle.create_digest(session, newsletter_slug="daily")
        digest.since = digest.until = digest.created_at
        for subscriber_id in readers.values():
            session.add(Delivery(digest_id=digest.id, subscriber_id=subscriber_id))
        session.flush()
        deliveries = dict(
            session.execute(
                select(Delivery.subscriber_id, Delivery.id).where(Delivery.digest_id == digest.id)
            ).all()
        )
    ledger = Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="test")
    try:
        claimed = {email: bool(ledger.claim([deliveries[readers[email]]])) for email in readers}
        for email in readers:
            if not claimed[email]:
                ledger.skip_if_ineligible(deliveries[readers[email]])
    finally:
        ledger.close()
    assert checked == READERS
    assert {r.subscriber_id for r in walked} == {readers["fine@example.com"]}
    assert claimed == READERS
    with db.session_scope() as session:
        skipped = set(
            session.scalars(
                select(Delivery.subscriber_id).where(Delivery.status == DeliveryStatus.SKIPPED)
            )
        )
    assert skipped == {readers[email] for email, ok in READERS.items() if not ok}


def test_notices_follow_the_same_rule(readers: dict[str, int]) -> None:
    """The welcome goes to confirmed readers who may be mailed; the confirmation only to a
    pending reader who may be; the goodbye never to a bounced or suppressed address."""
    with db.session_scope() as session:
        welcome = {
            email: eligibility.can_receive(session, subscriber_id=sid, newsletter_id=None)
            for email, sid in readers.items()
        }
        confirm = {
            email: eligibility.can_be_asked_to_confirm(session, subscriber_id=sid)
            for email, sid in readers.items()
        }
        goodbye = {
            email: eligibility.can_be_told_goodbye(session, subscriber_id=sid)
            for email, sid in readers.items()
        }
    assert welcome == READERS
    assert confirm == {email: email == "pending@example.com" for email in READERS}
    assert goodbye == {
        "fine@example.com": True,
        "pending@example.com": True,
        "gone@example.com": True,
        "bounced@example.com": False,
        "complained@example.com": False,
        "suppressed@example.com": False,
        "SHOUTING@Example.com": False,
    }


def test_a_suppression_added_after_dispatch_is_honoured_by_the_claim(
    readers: dict[str, int],
) -> None:
    """Queued first, suppressed a moment later: the claim refuses and the delivery is skipped."""
    with db.session_scope() as session:
        digest = lifecycle.create_digest(session, newsletter_slug="daily")
        digest.since = digest.created_at - timedelta(days=1)
        digest.until = digest.created_at
        newsletter_id = digest.newsletter_id
        session.add(
            Delivery(digest_id=digest.id, subscriber_id=readers["fine@example.com"], attempts=0)
        )
        session.flush()
        delivery_id = session.scalars(
            select(Delivery.id).where(Delivery.digest_id == digest.id)
        ).one()
    with db.session_scope() as session:
        suppressions.add(session, email="FINE@example.com")
    ledger = Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="test")
    try:
        assert not ledger.claim([delivery_id])
        ledger.skip_if_ineligible(delivery_id)
    finally:
        ledger.close()
    with db.session_scope() as session:
        assert session.get(Delivery, delivery_id).status == DeliveryStatus.SKIPPED  # type: ignore[union-attr]


@pytest.mark.parametrize("page", [1, 2, 3, 100])
def test_the_walk_by_pages_finds_the_same_readers_and_each_once(
    readers: dict[str, int], page: int
) -> None:
    """A page is the next `page` subscribed readers by id, then the eligible among them:
    short or even empty pages on the way, never a reader twice or missed, and the walk ends
    when no subscribed reader is left."""
    with db.session_scope() as session:
        newsletter_id = get_by_slug(session, "daily").id
        walked: list[int] = []
        after, pages = 0, 0
        while True:
            found, last_id = composer.eligible_readers(
                session, newsletter_id=newsletter_id, after_id=after, limit=page
            )
            if last_id is None:
                assert found == []
                break
            assert len(found) <= page and last_id > after
            assert all(after < r.subscriber_id <= last_id for r in found)
            walked += [r.subscriber_id for r in found]
            after, pages = last_id, pages + 1
    assert walked == [readers["fine@example.com"]]
    # Every subscribed reader was looked at, `page` at a time (not the pending nor the gone).
    assert pages == -(-(len(READERS) - 2) // page)
