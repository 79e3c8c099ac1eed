"""Subscribers: signup with double opt-in, confirmation, preferences, unsubscribe, erasure."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, Text, cast, func, or_, select
from sqlalchemy.orm import Session, selectinload

from newsletter.analytics import recording
from newsletter.core import metrics
from newsletter.core.clock import utcnow
from newsletter.core.i18n import N_
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    EventKind,
    Newsletter,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from newsletter.core.validation import (
    InvalidInput,
    clean_email,
    clean_language,
    clean_slugs,
    clean_text,
    clean_time_zone,
    clean_topics,
    without_address,
)
from newsletter.subscribers import newsletters as newsletter_store
from newsletter.subscribers import reader_status, suppressions


class UnknownSubscriber(LookupError):
    pass


@dataclass(frozen=True)
class SignupForm:
    """What a reader (or an editor on their behalf) gives when subscribing."""

    email: str
    name: str | None = None
    # None: not asked (an API caller, a script): the default newsletter. A list, even an
    # empty one, is what the reader ticked: none ticked is refused, not read as `daily`.
    newsletters: Sequence[str] | None = None
    topics: Sequence[str] | str | None = None
    language: str | None = None
    time_zone: str | None = None


@dataclass
class SignupOutcome:
    """What happened, for the caller only: the reader always sees the same answer."""

    subscriber_id: int | None
    send_confirmation: bool = False
    suppressed: bool = False
    newly_confirmed: list[int] = field(default_factory=list)
    # The newsletters the confirmation asks about: every one pending for the address.
    pending: list[int] = field(default_factory=list)
    # A confirmation was due, but the limit on confirmations to this mailbox said no.
    confirmation_limited: bool = False


@dataclass(frozen=True)
class CleanSignup:
    """A signup form checked: every field as it will be stored."""

    email: str
    email_key: str
    name: str
    language: str
    topics: list[str]
    time_zone: str
    newsletters: list[Newsletter]


# A signup that asks for no newsletter at all: there would be nothing to confirm.
NO_NEWSLETTER_CHOSEN = "Choose at least one newsletter to subscribe to."


def check_signup(
    session: Session, form: SignupForm, *, default_language: str, default_time_zone: str
) -> None:
    """InvalidInput unless the form would make a signup: the signup request's check. Reads
    nothing about readers, and about newsletters only what this process has not seen
    (newsletters.check_slugs): the same work whoever's address the form names."""
    _, slugs = _clean_signup_fields(form, default_language, default_time_zone)
    try:
        newsletter_store.check_slugs(session, slugs)
    except newsletter_store.UnknownNewsletter as exc:
        raise InvalidInput("newsletters", str(exc)) from None


def clean_signup(
    session: Session, form: SignupForm, *, default_language: str, default_time_zone: str
) -> CleanSignup:
    """The form's fields cleaned and its newsletters read, or InvalidInput."""
    fields, slugs = _clean_signup_fields(form, default_language, default_time_zone)
    try:
        wanted = newsletter_store.get_by_slugs(session, slugs)
    except newsletter_store.UnknownNewsletter as exc:
        raise InvalidInput("newsletters", str(exc)) from None
    return replace(fields, newsletters=wanted)


def _clean_signup_fields(
    form: SignupForm, default_language: str, default_time_zone: str
) -> tuple[CleanSignup, list[str]]:
    """Every field but the newsletters cleaned, and the slugs the form names."""
    email, key = clean_email(form.email, to_mail=True)
    name = clean_text("name", form.name)
    language = clean_language(form.language, default=default_language)
    topics = clean_topics(form.topics)
    time_zone = clean_time_zone(form.time_zone, default=default_time_zone)
    slugs = clean_slugs(form.newsletters)
    if form.newsletters is not None and not slugs:
        raise InvalidInput("newsletters", NO_NEWSLETTER_CHOSEN)
    return CleanSignup(email, key, name, language, topics, time_zone, []), slugs


def subscribe(
    session: Session,
    form: SignupForm,
    *,
    source: str,
    ip: str | None = None,
    confirmed: bool = False,
    default_language: str,
    default_time_zone: str,
    confirmation_interval: timedelta,
    may_send_confirmation: Callable[[], bool] | None = None,
    now: datetime | None = None,
) -> SignupOutcome:
    """Record a signup; say whether a confirmation email should go out now.

    Invalid input raises InvalidInput and changes nothing. An address that is already
    known keeps its name and settings (only the reader, through their preferences link,
    changes those), so that a stranger cannot rewrite somebody's profile by signing up.

    A confirmation is due when a pending subscription has had none within the interval
    (a newsletter just added has had none); it asks about every pending one.
    `may_send_confirmation`, asked only then, may still refuse it (a limit per mailbox).
    """
    now = now or utcnow()
    signup = clean_signup(
        session, form, default_language=default_language, default_time_zone=default_time_zone
    )
    if suppressions.is_listed(session, signup.email_key):
        return SignupOutcome(subscriber_id=None, suppressed=True)

    subscriber = session.scalar(
        select(Subscriber)
        .where(Subscriber.email_key == signup.email_key)
        .options(selectinload(Subscriber.subscriptions))
    )
    if subscriber is None:
        subscriber = Subscriber(
            email=signup.email,
            email_key=signup.email_key,
            name=signup.name,
            language=signup.language,
            topics=signup.topics,
            time_zone=signup.time_zone,
            status=SubscriberStatus.ACTIVE,
            subscriptions=[],
        )
        session.add(subscriber)
        session.flush()
        record_event(session, subscriber, EventKind.SIGNED_UP, source=source)
        repeated = False
    else:
        repeated = True
    if subscriber.status != SubscriberStatus.ACTIVE:
        return SignupOutcome(subscriber_id=subscriber.id, suppressed=True)

    by_newsletter = {sub.newsletter_id: sub for sub in subscriber.subscriptions}
    outcome = SignupOutcome(subscriber_id=subscriber.id)
    for newsletter in signup.newsletters:
        subscription = by_newsletter.get(newsletter.id)
        if subscription is None:
            subscription = Subscription(newsletter_id=newsletter.id)
            subscriber.subscriptions.append(subscription)
        if subscription.status == SubscriptionStatus.SUBSCRIBED:
            continue
        subscription.consent_source = source
        subscription.consent_ip = ip
        if confirmed:
            _activate(session, subscriber, subscription, now=now, source=source)
            outcome.newly_confirmed.append(newsletter.id)
        else:
            subscription.status = SubscriptionStatus.PENDING

    pending = [s for s in subscriber.subscriptions if s.status == SubscriptionStatus.PENDING]
    due = [
        s
        for s in pending
        if not s.confirmation_sent_at or now - s.confirmation_sent_at >= confirmation_interval
    ]
    if due and (may_send_confirmation is None or may_send_confirmation()):
        for subscription in pending:
            subscription.confirmation_sent_at = now
        outcome.send_confirmation = True
        outcome.pending = sorted(s.newsletter_id for s in pending)
    elif due:
        outcome.confirmation_limited = True
    if repeated:
        _record_repeated_signup(session, subscriber, signup, outcome, source=source)
    session.flush()  # once, with the confirmation time: no UPDATE right after the INSERT
    metrics.count_signup()
    return outcome


def _record_repeated_signup(
    session: Session,
    subscriber: Subscriber,
    signup: CleanSignup,
    outcome: SignupOutcome,
    *,
    source: str,
) -> None:
    """A known address signed up again: in the reader's history, what was asked and what
    it came to (the page answered the same words as for anyone, see web/reader.py)."""
    if outcome.send_confirmation:
        confirmation = "sent"
    elif outcome.confirmation_limited:
        confirmation = "over the mailbox's limit"
    elif any(s.status == SubscriptionStatus.PENDING for s in subscriber.subscriptions):
        confirmation = "within the interval"  # one went a few minutes ago: none again yet
    else:
        confirmation = "none due"  # every newsletter asked is subscribed already
    record_event(
        session,
        subscriber,
        EventKind.SIGNUP_REPEATED,
        source=source,
        newsletters=[n.slug for n in signup.newsletters],
        confirmation=confirmation,
    )


def confirm(
    session: Session,
    *,
    subscriber_id: int,
    newsletter_ids: Collection[int] | None = None,
    issued_at: datetime | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Activate the pending subscriptions a confirmation link was sent for; the ids of the
    newsletters newly activated.

    `newsletter_ids` are those the link names (None, for an editor's own call: every
    pending one): a newsletter someone added to the pending address after the link was
    sent stays pending, for a confirmation of its own. A subscription left after the link
    was made (`issued_at`), then signed up for again, is not confirmed by it either.
    """
    now = now or utcnow()
    subscriber = get_subscriber(session, subscriber_id)
    activated = []
    for subscription in subscriber.subscriptions:
        if subscription.status != SubscriptionStatus.PENDING:
            continue
        if newsletter_ids is not None and subscription.newsletter_id not in newsletter_ids:
            continue
        if issued_at is not None and _left_since(subscription, issued_at):
            continue
        _activate(session, subscriber, subscription, now=now, source="confirmation link")
        activated.append(subscription.newsletter_id)
    return activated


def unsubscribe(
    session: Session,
    *,
    subscriber_id: int,
    newsletter_id: int | None = None,
    source: str,
    now: datetime | None = None,
) -> list[int]:
    """Unsubscribe from one newsletter (or all); the ids of newsletters actually left."""
    now = now or utcnow()
    subscriber = get_subscriber(session, subscriber_id)
    left = []
    for subscription in subscriber.subscriptions:
        if newsletter_id is not None and subscription.newsletter_id != newsletter_id:
            continue
        if subscription.status != SubscriptionStatus.UNSUBSCRIBED:
            subscription.status = SubscriptionStatus.UNSUBSCRIBED
            subscription.unsubscribed_at = now
            record_event(
                session,
                subscriber,
                EventKind.UNSUBSCRIBED,
                newsletter_id=subscription.newsletter_id,
                source=source,
            )
            left.append(subscription.newsletter_id)
            metrics.count_unsubscribe()
    return left


# How long after leaving a reader may come back from the unsubscribe page, with the
# unsubscribe link alone. That link lives for ever in every email (a forwarded one too) and
# otherwise only lets one leave: it undoes a click of a moment ago, it does not subscribe
# anyone who left last year. Later, coming back is a signup, confirmed by email.
RESUBSCRIBE_WINDOW = timedelta(hours=24)


def may_resubscribe(
    subscription: Subscription, subscriber: Subscriber, *, now: datetime | None = None
) -> bool:
    """Whether this subscription, left a moment ago, may be taken back by its unsubscribe link."""
    now = now or utcnow()
    return (
        subscriber.status == SubscriberStatus.ACTIVE
        and subscription.status == SubscriptionStatus.UNSUBSCRIBED
        and subscription.unsubscribed_at is not None
        and now - subscription.unsubscribed_at <= RESUBSCRIBE_WINDOW
    )


def resubscribe(
    session: Session,
    *,
    subscriber_id: int,
    newsletter_id: int | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Take back the latest unsubscribe, if of the last RESUBSCRIBE_WINDOW (one newsletter,
    or all that unsubscribe ended); the ids of the newsletters subscribed again. Nothing
    for a reader who bounced, complained or is on the suppression list."""
    now = now or utcnow()
    subscriber = get_subscriber(session, subscriber_id)
    if suppressions.is_listed(session, subscriber.email_key):
        return []
    recent = [
        subscription
        for subscription in subscriber.subscriptions
        if (newsletter_id is None or subscription.newsletter_id == newsletter_id)
        and may_resubscribe(subscription, subscriber, now=now)
    ]
    # Only what the latest unsubscribe ended (one moment for "everything"): a newsletter
    # the reader left on purpose an hour before stays left.
    latest = max((s.unsubscribed_at for s in recent if s.unsubscribed_at), default=None)
    back = []
    for subscription in recent:
        if subscription.unsubscribed_at == latest:
            _activate(session, subscriber, subscription, now=now, source="unsubscribe page")
            back.append(subscription.newsletter_id)
    session.flush()
    return back


def confirmation_result(subscriber: Subscriber, newsletter_ids: Collection[int] | None) -> str:
    """What a confirmation link came to, for its page: "subscribed" (to a newsletter it asked
    about, now or by an earlier click), "unsubscribed" (the reader left since: the link
    does not bring them back, see confirm) or "nothing pending"."""
    asked = [
        s
        for s in subscriber.subscriptions
        if newsletter_ids is None or s.newsletter_id in newsletter_ids
    ]
    if any(s.status == SubscriptionStatus.SUBSCRIBED for s in asked):
        return "subscribed"
    if any(s.status == SubscriptionStatus.UNSUBSCRIBED for s in asked):
        return "unsubscribed"
    return "nothing pending"


def may_open_preferences_from_unsubscribe(subscriber: Subscriber) -> bool:
    """Whether the unsubscribe page may link to the reader's preferences. An unsubscribe
    link outlives a revocation of links (it only lets one leave): it gives a preferences
    link only while the email carrying it carries a working one too (links never revoked)."""
    return subscriber.token_version == 0


def sends_in_flight(session: Session, *, subscriber_id: int, within: timedelta) -> int:
    """How many messages to this reader are claimed by a worker and not yet answered.

    A worker checks that a reader may be mailed when it claims the delivery, just before
    the message goes out. After an unsubscribe commits, a claim made a moment earlier may
    still be on the wire; the reader's pages wait until this is 0 before they answer, so
    that nothing reaches them after they were told they are out (every later claim sees
    the unsubscribe). Claims older than `within` belong to a worker that died; the sweeper
    gives them back and their new claim sees the unsubscribe too.
    """
    return (
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.subscriber_id == subscriber_id,
                Delivery.status == DeliveryStatus.SENDING,
                Delivery.claimed_at >= utcnow() - within,
            )
        )
        or 0
    )


@dataclass(frozen=True)
class Preferences:
    name: str | None
    language: str | None
    topics: Sequence[str] | str | None
    newsletters: Sequence[str]
    time_zone: str | None = None


def update_preferences(
    session: Session, *, subscriber_id: int, preferences: Preferences, now: datetime | None = None
) -> None:
    """Apply what the reader chose on their preferences page.

    Newsletters ticked there are subscribed at once: the link is only ever mailed to the
    address itself, so following it is the confirmation.
    """
    now = now or utcnow()
    subscriber = get_subscriber(session, subscriber_id)
    name = clean_text("name", preferences.name)
    language = clean_language(preferences.language, default=subscriber.language)
    topics = clean_topics(preferences.topics)
    time_zone = clean_time_zone(preferences.time_zone, default=subscriber.time_zone)
    slugs = clean_slugs(preferences.newsletters)
    try:
        # No newsletter ticked means none (not the default one): the reader is leaving all.
        wanted = {n.id for n in newsletter_store.get_by_slugs(session, slugs)} if slugs else set()
    except newsletter_store.UnknownNewsletter as exc:
        raise InvalidInput("newsletters", str(exc)) from None

    subscriber.name, subscriber.language = name, language
    subscriber.topics, subscriber.time_zone = topics, time_zone
    existing = {s.newsletter_id: s for s in subscriber.subscriptions}
    for newsletter_id in wanted:
        subscription = existing.get(newsletter_id)
        if subscription is None:
            subscription = Subscription(newsletter_id=newsletter_id, consent_source="preferences")
            subscriber.subscriptions.append(subscription)
        if subscription.status != SubscriptionStatus.SUBSCRIBED:
            _activate(session, subscriber, subscription, now=now, source="preferences")
    left = [nid for nid, s in existing.items() if nid not in wanted]
    for newsletter_id in left:
        unsubscribe(
            session,
            subscriber_id=subscriber.id,
            newsletter_id=newsletter_id,
            source="preferences",
            now=now,
        )
    record_event(session, subscriber, EventKind.PREFERENCES_CHANGED)


def set_records(session: Session, *, subscriber_id: int, allowed: bool) -> bool:
    """The reader allows, or refuses, per-reader records of their clicks and opens (the
    preferences page). Refused, what was recorded as theirs is deleted at once, and their
    later clicks are counted only in totals. Whether anything changed."""
    subscriber = get_subscriber(session, subscriber_id)
    refused = not allowed
    if subscriber.tracking_refused == refused:
        return False
    subscriber.tracking_refused = refused
    deleted = recording.forget_reader(session, subscriber_id=subscriber.id) if refused else 0
    record_event(
        session, subscriber, EventKind.PREFERENCES_CHANGED, records=allowed, deleted=deleted
    )
    return True


class LinkWithdrawn(LookupError):
    """A link to a reader's data made before their links were revoked (token version)."""


# A reader gets at most one link to their data (and one to confirm its erasure) this often,
# however often the button is pressed: a leaked preferences link cannot flood the inbox.
DATA_LINK_INTERVAL = timedelta(minutes=10)
DATA_LINK_EVENTS = {"export": EventKind.EXPORT_LINK_SENT, "erase": EventKind.ERASURE_LINK_SENT}


def reader_of_link(session: Session, *, subscriber_id: int, version: int) -> Subscriber:
    """The reader a preferences or data link names, if it is of their current token
    version; UnknownSubscriber (erased) or LinkWithdrawn (revoked) otherwise."""
    subscriber = get_subscriber(session, subscriber_id)
    if subscriber.token_version != version:
        raise LinkWithdrawn(N_("This link was withdrawn; the newest email has one that works."))
    return subscriber


def revoke_links(session: Session, *, subscriber_id: int) -> int:
    """Every preferences, data and erasure link mailed to the reader stops working; the
    next email carries new ones. Unsubscribe links keep working (they only let one leave).
    The new token version."""
    subscriber = get_subscriber(session, subscriber_id)
    subscriber.token_version += 1
    record_event(session, subscriber, EventKind.LINKS_REVOKED)
    session.flush()
    return subscriber.token_version


def note_data_link(
    session: Session, *, subscriber_id: int, action: str, now: datetime | None = None
) -> bool:
    """Record that a link for `action` (export or erase) is to be mailed to the reader;
    False, recording nothing, when one went within DATA_LINK_INTERVAL."""
    now = now or utcnow()
    kind = DATA_LINK_EVENTS[action]
    subscriber = get_subscriber(session, subscriber_id)
    recent = session.scalar(
        select(SubscriberEvent.id).where(
            SubscriberEvent.subscriber_id == subscriber.id,
            SubscriberEvent.kind == kind,
            SubscriberEvent.created_at > now - DATA_LINK_INTERVAL,
        )
    )
    if recent is not None:
        return False
    record_event(session, subscriber, kind).created_at = now
    session.flush()
    return True


def erase(session: Session, *, subscriber_id: int, now: datetime | None = None) -> None:
    """Delete everything personal about a reader; keep only a keyed hash so they are never
    mailed. Their subscriptions and events go with them; an entry they had on the
    suppression list keeps its reason but loses its address and its detail (a bounce's
    diagnostic quotes the address). The bounce records and the deliveries' errors are
    their modules' to clear (app.readers.erase calls each)."""
    subscriber = get_subscriber(session, subscriber_id)
    entry = suppressions.suppress(
        session, email_key=subscriber.email_key, email=None, reason="erased", now=now
    )
    entry.detail = ""
    # Other readers' events may quote the address (a bounce report that names it).
    quoting = session.scalars(
        select(SubscriberEvent).where(
            SubscriberEvent.subscriber_id != subscriber.id,
            func.lower(cast(SubscriberEvent.detail, Text)).contains(
                subscriber.email_key, autoescape=True
            ),
        )
    )
    for event in quoting:
        event.detail = _without_address(event.detail, subscriber.email_key)
    session.delete(subscriber)
    session.flush()


def _without_address(value: Any, email_key: str) -> Any:
    if isinstance(value, str):
        return without_address(value, email_key)
    if isinstance(value, dict):
        return {key: _without_address(item, email_key) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_address(item, email_key) for item in value]
    return value


def export_data(session: Session, *, subscriber_id: int) -> dict[str, Any]:
    """Everything stored about one reader, as JSON-able data (GDPR article 15)."""
    subscriber = get_subscriber(session, subscriber_id)
    slugs = {n.id: n.slug for n in newsletter_store.list_newsletters(session)}
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "language": subscriber.language,
        "time_zone": subscriber.time_zone,
        "topics": list(subscriber.topics),
        # In the one vocabulary (pending, subscribed, …): see subscribers/reader_status.py.
        "status": reader_status.statuses_of(session, [subscriber.id])[subscriber.id],
        "soft_bounce_count": subscriber.soft_bounce_count,
        "created_at": _iso(subscriber.created_at),
        "updated_at": _iso(subscriber.updated_at),
        "subscriptions": [
            {
                "newsletter": slugs.get(s.newsletter_id),
                "status": s.status,
                "created_at": _iso(s.created_at),
                "confirmed_at": _iso(s.confirmed_at),
                "unsubscribed_at": _iso(s.unsubscribed_at),
                "consent_source": s.consent_source,
                "consent_ip": s.consent_ip,
            }
            for s in subscriber.subscriptions
        ],
        "events": [
            {
                "kind": e.kind,
                "newsletter": slugs.get(e.newsletter_id) if e.newsletter_id else None,
                "detail": e.detail,
                "created_at": _iso(e.created_at),
            }
            for e in subscriber.events
        ],
        # Per-reader clicks and opens: only with NEWSLETTER_TRACK_READERS and consent.
        "records_refused": subscriber.tracking_refused,
        "clicks_and_opens": recording.reader_events(session, subscriber_id=subscriber.id),
    }


def get_subscriber(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise UnknownSubscriber(f"No subscriber with id {subscriber_id}.")
    return subscriber


def find_by_email(session: Session, email: str) -> Subscriber:
    """The subscriber with this address (any capitalisation), or UnknownSubscriber."""
    _, key = clean_email(email)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    if subscriber is None:
        raise UnknownSubscriber(f"No subscriber with the address {email}.")
    return subscriber


def list_subscribers(session: Session, *, limit: int = 1000, after_id: int = 0) -> list[Subscriber]:
    return list(
        session.scalars(
            select(Subscriber)
            .where(Subscriber.id > after_id)
            .order_by(Subscriber.id)
            .limit(limit)
            .options(selectinload(Subscriber.subscriptions))
        )
    )


def delivery_counts(session: Session, *, subscriber_id: int) -> dict[str, int]:
    """How many digest deliveries this reader has had, by delivery status."""
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.subscriber_id == subscriber_id)
        .group_by(Delivery.status)
    )
    return {str(status): int(number) for status, number in rows}


def search_subscribers(
    session: Session, *, text: str = "", limit: int = 50, offset: int = 0, after_id: int = 0
) -> list[Subscriber]:
    """Subscribers whose address or name contains text (any case), in id order.

    The text is a bound parameter with LIKE's wildcards escaped: it matches as typed.
    """
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must not be negative, got {limit} and {offset}")
    query = (
        _matching(text)
        .where(Subscriber.id > after_id)
        .order_by(Subscriber.id)
        .limit(limit)
        .offset(offset)
        .options(selectinload(Subscriber.subscriptions))
    )
    return list(session.scalars(query))


def count_subscribers(session: Session, *, text: str = "") -> int:
    """How many subscribers search_subscribers finds for text, over all pages."""
    query = select(func.count()).select_from(_matching(text).subquery())
    return int(session.scalar(query) or 0)


def record_event(
    session: Session,
    subscriber: Subscriber,
    kind: EventKind,
    *,
    newsletter_id: int | None = None,
    delivery_id: int | None = None,
    **detail: Any,
) -> SubscriberEvent:
    # Set from the event's side: appending to subscriber.events would first load every
    # event the reader ever had (a SELECT on each signup, more for an old reader).
    event = SubscriberEvent(
        subscriber=subscriber,
        kind=kind,
        newsletter_id=newsletter_id,
        delivery_id=delivery_id,
        detail=detail,
    )
    session.add(event)
    return event


def _activate(
    session: Session,
    subscriber: Subscriber,
    subscription: Subscription,
    *,
    now: datetime,
    source: str,
) -> None:
    subscription.status = SubscriptionStatus.SUBSCRIBED
    subscription.confirmed_at = now
    subscription.unsubscribed_at = None
    metrics.count_confirmation()
    record_event(
        session,
        subscriber,
        EventKind.CONFIRMED,
        newsletter_id=subscription.newsletter_id,
        source=source,
    )


def _left_since(subscription: Subscription, issued_at: datetime) -> bool:
    """Whether the reader left this subscription after a link made at issued_at."""
    issued_by = issued_at + timedelta(seconds=1)  # a token's time is in whole seconds
    return subscription.unsubscribed_at is not None and subscription.unsubscribed_at > issued_by


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _matching(text: str) -> Select[Subscriber]:
    query = select(Subscriber)
    needle = clean_text("search", text, max_length=320).lower()
    if needle:
        query = query.where(
            or_(
                Subscriber.email_key.contains(needle, autoescape=True),
                func.lower(Subscriber.name).contains(needle, autoescape=True),
            )
        )
    return query
