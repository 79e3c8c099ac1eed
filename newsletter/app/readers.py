"""What a reader does: sign up, confirm, unsubscribe, change preferences, erase their data.

Each function takes a unit of work, changes the database through the subscriber store,
commits, and only then hands the email it calls for (confirmation, welcome, goodbye) to
the queue. The web pages and the CLI call these; they only parse and render.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from newsletter.app import jobs
from newsletter.app.unit_of_work import UnitOfWork
from newsletter.bounces import policy as bounces
from newsletter.core.config import Settings
from newsletter.core.models import Subscriber, SubscriptionStatus
from newsletter.core.validation import InvalidInput
from newsletter.sending import ledger
from newsletter.subscribers import signup_limits
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.signup_limits import SignupLimited
from newsletter.subscribers.store import Preferences, SignupForm, SignupOutcome

# Where an unsubscribe came from when a person pressed the button on our page, rather than
# a mail client's RFC 8058 one-click POST: only a person is told goodbye.
FROM_OUR_PAGE = "web"


class TooManySignups(Exception):
    """A signup over the hourly limits; nothing was asked about the address."""

    def __init__(self, limited: SignupLimited) -> None:
        super().__init__(f"over the hourly signup limit per {limited.by}")
        self.limited = limited


class SignupsUnavailable(Exception):
    """The signup could not be handed to the workers (the broker does not answer)."""


def sign_up(work: UnitOfWork, *, form: SignupForm, ip: str | None, settings: Settings) -> None:
    """A signup from the signup page or the API: counted, checked, and handed to a worker.

    The same work whatever the address: the limits are counted, the form is checked (the
    newsletters it names are read, never the readers), one job is queued. The worker
    decides what the address is owed (record_signup); nothing here, not even the time
    it takes, depends on whether the address is known, pending, subscribed or suppressed.

    TooManySignups when over a limit; InvalidInput (and nothing queued) for bad input;
    SignupsUnavailable when the broker does not take the job.
    """
    limited = signup_limits.check_signup(settings, ip=ip, email=form.email)
    if limited is not None:
        raise TooManySignups(limited)
    try:
        subscribers.check_signup(
            work.session,
            form,
            default_language=settings.default_language,
            default_time_zone=settings.default_time_zone,
        )
    except InvalidInput:
        work.rollback()
        raise
    work.enqueue(jobs.sign_up(_plain(form), ip))
    try:
        work.commit()
    except Exception as exc:  # kombu's errors, a refused connection: the broker is down
        raise SignupsUnavailable(type(exc).__name__) from exc


def record_signup(
    work: UnitOfWork, *, form: SignupForm, ip: str | None, settings: Settings
) -> SignupOutcome:
    """What a worker makes of a signup from the signup page.

    A new address becomes a pending reader and is sent the confirmation; a pending one is
    sent it again (once per NEWSLETTER_CONFIRMATION_INTERVAL_SECONDS, and a newsletter
    just added is asked about at once); a subscribed one gets nothing (no "you are
    already subscribed" email: that would be one more message a stranger could make us
    send); a suppressed, bounced or complained one gets nothing. Every confirmation
    counts against its mailbox's daily allowance, whatever the spelling of the address.
    """
    return subscribe(
        work,
        form=form,
        source="web",
        ip=ip,
        settings=settings,
        may_send_confirmation=lambda: signup_limits.may_send_confirmation(
            settings, email=form.email
        ),
    )


def subscribe(
    work: UnitOfWork,
    *,
    form: SignupForm,
    source: str,
    settings: Settings,
    ip: str | None = None,
    confirmed: bool = False,
    welcome: bool = True,
    may_send_confirmation: Callable[[], bool] | None = None,
) -> SignupOutcome:
    """Record a signup; then the confirmation email (or, already confirmed, the welcome,
    unless `welcome` is off: see welcomes_confirmed).

    A pending reader who signs up again is sent the confirmation again, at most once per
    NEWSLETTER_CONFIRMATION_INTERVAL_SECONDS (the store decides); it asks about every
    newsletter pending, and its link confirms those only.
    """
    try:
        outcome = subscribers.subscribe(
            work.session,
            form,
            source=source,
            ip=ip,
            confirmed=confirmed,
            default_language=settings.default_language,
            default_time_zone=settings.default_time_zone,
            confirmation_interval=timedelta(seconds=settings.confirmation_interval_seconds),
            may_send_confirmation=may_send_confirmation,
        )
    except InvalidInput:
        work.rollback()
        raise
    if outcome.subscriber_id is not None:
        if outcome.send_confirmation:
            work.enqueue(jobs.send_confirmation(outcome.subscriber_id, outcome.pending))
        elif outcome.newly_confirmed and welcome:
            work.enqueue(jobs.send_welcome(outcome.subscriber_id, outcome.newly_confirmed))
    work.commit()
    return outcome


def welcomes_confirmed(*, asked: bool) -> bool:
    """Whether readers an editor adds as already confirmed (by hand or from a file) are
    sent the welcome: only when asked (--welcome, the dashboard's box). Their consent was
    given elsewhere; an email they did not expect from us is how spam reports start. The
    one rule for `subscribers add --confirmed` and a CSV import's `confirmed` column."""
    return asked


def signup_summary(outcome: SignupOutcome) -> str:
    """What a signup came to, in a word, for the worker's log (never shown to the reader)."""
    if outcome.suppressed:
        return "not mailed"
    if outcome.send_confirmation:
        return "confirmation queued"
    if outcome.confirmation_limited:
        return "confirmation over the mailbox's limit"
    if outcome.newly_confirmed:
        return "subscribed"
    return "nothing to send"


def confirm(
    work: UnitOfWork,
    *,
    subscriber_id: int,
    newsletter_ids: Collection[int] | None = None,
    issued_at: datetime | None = None,
) -> Subscriber:
    """The reader followed a confirmation link: the pending subscriptions it was sent for
    start (see subscribers.store.confirm), and the reader is welcomed to the newsletters
    that started (none when confirmed before)."""
    activated = subscribers.confirm(
        work.session,
        subscriber_id=subscriber_id,
        newsletter_ids=newsletter_ids,
        issued_at=issued_at,
    )
    subscriber = subscribers.get_subscriber(work.session, subscriber_id)
    if activated:
        work.enqueue(jobs.send_welcome(subscriber.id, activated))
    work.commit()
    return subscriber


def unsubscribe(
    work: UnitOfWork, *, subscriber_id: int, newsletter_id: int | None, source: str
) -> list[int]:
    """Leave one newsletter (or all): the ids of the newsletters actually left.

    Committed before it returns. An erased reader is unsubscribed already: nothing will be
    sent, as they asked, and nothing is left.
    """
    left: list[int] = []
    with contextlib.suppress(subscribers.UnknownSubscriber):
        left = subscribers.unsubscribe(
            work.session, subscriber_id=subscriber_id, newsletter_id=newsletter_id, source=source
        )
    work.commit()
    return left


def resubscribe(work: UnitOfWork, *, subscriber_id: int, newsletter_id: int | None) -> list[int]:
    """The reader pressed "subscribe again" on the unsubscribe page a moment after leaving:
    the newsletters subscribed again (see subscribers.store.resubscribe); committed."""
    back: list[int] = []
    with contextlib.suppress(subscribers.UnknownSubscriber):  # erased meanwhile
        back = subscribers.resubscribe(
            work.session, subscriber_id=subscriber_id, newsletter_id=newsletter_id
        )
    work.commit()
    return back


def say_goodbye(
    work: UnitOfWork,
    *,
    subscriber_id: int,
    newsletter_ids: list[int],
    source: str,
    settings: Settings,
) -> bool:
    """The goodbye email for the newsletters just left, when the publisher sends one and a
    person (not a mail client's one-click POST) unsubscribed; whether it was queued.

    The reader's page calls this once no message to them is on the wire any more, so that
    the goodbye is the last thing they receive.
    """
    if not (newsletter_ids and source == FROM_OUR_PAGE and settings.send_goodbye):
        return False
    work.enqueue(jobs.send_goodbye(subscriber_id, newsletter_ids))
    work.commit()
    return True


def update_preferences(work: UnitOfWork, *, subscriber_id: int, preferences: Preferences) -> bool:
    """Apply the preferences page; whether the reader left a newsletter by it.

    InvalidInput (and nothing changed) for bad input.
    """
    subscriber = subscribers.get_subscriber(work.session, subscriber_id)
    was_subscribed = _subscribed_ids(subscriber)
    try:
        subscribers.update_preferences(
            work.session, subscriber_id=subscriber_id, preferences=preferences
        )
    except InvalidInput:
        work.rollback()
        raise
    work.commit()
    return bool(was_subscribed - _subscribed_ids(subscriber))


def set_records(work: UnitOfWork, *, subscriber_id: int, allowed: bool) -> bool:
    """The reader's say over per-reader records of their clicks (see subscribers.store)."""
    changed = subscribers.set_records(work.session, subscriber_id=subscriber_id, allowed=allowed)
    work.commit()
    return changed


def request_data_link(work: UnitOfWork, *, subscriber_id: int, action: str) -> bool:
    """The reader asked, on their preferences page, for their data (action "export") or
    for its erasure ("erase"): a short-lived link goes to their address, at most one per
    action every ten minutes; whether one was queued now.

    Nothing is handed over or erased here: only the mailbox's owner can follow the link.
    """
    queued = subscribers.note_data_link(work.session, subscriber_id=subscriber_id, action=action)
    if queued:
        work.enqueue(jobs.send_data_link(subscriber_id, action))
    work.commit()
    return queued


def revoke_links(work: UnitOfWork, *, subscriber_id: int) -> None:
    """Every preferences, data and erasure link mailed to the reader stops working."""
    subscribers.revoke_links(work.session, subscriber_id=subscriber_id)
    work.commit()


def leave_before_erasure(work: UnitOfWork, *, subscriber_id: int) -> None:
    """The first step of an erasure: unsubscribed from everything, and committed, so that
    the caller can wait for a message already on its way before the data goes."""
    subscribers.unsubscribe(work.session, subscriber_id=subscriber_id, source="erasure")
    work.commit()


def erase(work: UnitOfWork, *, subscriber_id: int) -> None:
    """Delete everything about the reader; only a keyed hash stays, on the suppression list.

    Every copy of the address goes: the reader's row, subscriptions and events, their
    bounce records (kept as counts only), the address in their deliveries' errors and in
    any other bounce report that quotes it, and the suppression entry's address and
    detail. The deliveries stay, without a reader, so that digests' counts stay true.
    """
    with contextlib.suppress(subscribers.UnknownSubscriber):  # erased twice at once
        key = subscribers.get_subscriber(work.session, subscriber_id).email_key
        bounces.forget_reader(work.session, subscriber_id=subscriber_id, email_key=key)
        ledger.forget_reader(work.session, subscriber_id=subscriber_id, email_key=key)
        subscribers.erase(work.session, subscriber_id=subscriber_id)
    work.commit()


def _plain(form: SignupForm) -> dict[str, Any]:
    """The form as the job's plain JSON."""
    plain = dataclasses.asdict(form)
    if form.newsletters is not None:
        plain["newsletters"] = list(form.newsletters)
    if form.topics is not None and not isinstance(form.topics, str):
        plain["topics"] = list(form.topics)
    return plain


def _subscribed_ids(subscriber: Subscriber) -> set[int]:
    return {
        s.newsletter_id
        for s in subscriber.subscriptions
        if s.status == SubscriptionStatus.SUBSCRIBED
    }
