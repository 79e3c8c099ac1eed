"""Bounces and complaints: find whom they are about, record them, and act on the reader.

Staged as Mailman does it: find the reader the report proves it is about (find_reader: a
VERP token of ours, or the Message-ID of a delivery really sent to that address; an
address alone proves nothing, since anyone can write one), register the event once (a
provider's event id or the message's hash makes a second copy count for nothing), then
act: a hard bounce suppresses at once, soft bounces are scored over a window, a complaint
unsubscribes from everything. A report that proves nothing is kept, unverified, for the
operator to see, and changes no reader.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.bounces.status import enhanced_status
from newsletter.core import metrics
from newsletter.core.clock import utcnow
from newsletter.core.config import Settings
from newsletter.core.logs import mask_address
from newsletter.core.models import (
    BounceEvent,
    BounceKind,
    Delivery,
    DeliveryStatus,
    EventKind,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Suppression,
    WebhookToken,
)
from newsletter.core.tokens import TokenError, read_verp_token
from newsletter.core.validation import email_hash, storable_text, without_address
from newsletter.email.addresses import AddressKind, read_reader_address
from newsletter.sending import ledger
from newsletter.subscribers.store import get_subscriber, record_event, unsubscribe
from newsletter.subscribers.suppressions import suppress

log = logging.getLogger("newsletter.bounces")


# A DSN or a provider's event is a few kilobytes; more of it is never needed to judge it.
RAW_KEPT = 64 * 1024


@dataclass(frozen=True)
class Proof:
    """The reader and delivery a report proved it is about, or why it proved nothing."""

    subscriber_id: int | None
    delivery_id: int | None
    why: str  # "verp token", "message id", or what was missing

    @property
    def verified(self) -> bool:
        return self.subscriber_id is not None


@dataclass(frozen=True)
class BounceOutcome:
    """What one bounce, complaint or mailed unsubscribe did (or why it did nothing)."""

    kind: str
    action: str  # suppressed, scored, unsubscribed, unverified, ignored, duplicate
    subscriber_id: int | None = None
    delivery_id: int | None = None
    detail: str = ""


def record_hard_bounce(
    session: Session,
    *,
    subscriber_id: int,
    delivery_id: int | None,
    reply: str,
    source: str,
    now: datetime | None = None,
) -> BounceOutcome:
    """A permanent failure from the relay while sending: the reader is suppressed at once."""
    return record(
        session,
        kind=BounceKind.HARD,
        source=source,
        subscriber_id=subscriber_id,
        delivery_id=delivery_id,
        recipient=None,
        status=enhanced_status(reply),
        diagnostic=reply[:1000],
        raw=None,
        event_key=None,
        verified=True,
        soft_limit=1,
        soft_window=timedelta(days=14),
        now=now,
    )


def record(
    session: Session,
    *,
    kind: str,
    source: str,
    subscriber_id: int | None,
    delivery_id: int | None,
    recipient: str | None,
    status: str | None,
    diagnostic: str | None,
    raw: str | None,
    event_key: str | None,
    verified: bool,
    soft_limit: int,
    soft_window: timedelta,
    now: datetime | None = None,
) -> BounceOutcome:
    """Register one event (once per event_key) and, when it is verified, act on its reader.

    An unverified event keeps what it claimed (kind, recipient, status) for the operator,
    without a reader, a delivery or its raw source, and changes nothing.
    """
    now = now or utcnow()
    if not verified:
        subscriber_id = delivery_id = None
        raw = None
    # Every door's text comes from outside: a NUL in it would lose the event on PostgreSQL.
    recipient, status, diagnostic, event_key = (
        storable_text(value) for value in (recipient, status, diagnostic, event_key)
    )
    raw = storable_text(raw[:RAW_KEPT]) if raw else None
    if event_key and session.scalar(
        select(BounceEvent.id).where(BounceEvent.event_key == event_key)
    ):
        return BounceOutcome(kind, "duplicate", subscriber_id, delivery_id)
    event = BounceEvent(
        subscriber_id=subscriber_id,
        delivery_id=delivery_id,
        kind=kind,
        source=source,
        event_key=event_key,
        recipient=recipient,
        status=status,
        diagnostic=(diagnostic or "")[:2000] or None,
        raw=raw,
        verified=verified,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(event)
    except IntegrityError:  # the same event, recorded a moment ago by another process
        return BounceOutcome(kind, "duplicate", subscriber_id, delivery_id)
    if not verified:
        return BounceOutcome(kind, "unverified", None, None, "proves no delivery of ours")
    if subscriber_id is None:
        return BounceOutcome(kind, "ignored", None, delivery_id, "no reader to act on")
    subscriber = get_subscriber(session, subscriber_id)
    action = _act(
        session,
        subscriber,
        kind=kind,
        delivery_id=delivery_id,
        status=status,
        diagnostic=diagnostic,
        source=source,
        soft_limit=soft_limit,
        soft_window=soft_window,
        now=now,
    )
    metrics.count_bounce(kind)
    log.info(
        "%s bounce from %s for subscriber %s (delivery %s): %s",
        kind,
        source,
        subscriber_id,
        delivery_id,
        action,
        extra={"subscriber_id": subscriber_id, "delivery_id": delivery_id},
    )
    return BounceOutcome(kind, action, subscriber_id, delivery_id)


def find_reader(
    session: Session,
    *,
    settings: Settings,
    kind: str,
    verp_tokens: list[str],
    addresses: list[str],
    message_id: str | None,
    mailed_from: str | None = None,
) -> Proof:
    """Which reader (and delivery) a report may act on: the one rule every door uses.

    Proof is a VERP token we made (and, when it names a delivery, a delivery of that same
    reader), or the Message-ID of a delivery really sent (not merely queued) whose reader's
    address is the one the report names. An address alone proves nothing. A complaint that
    came by mail (`mailed_from`: its sender's domain) counts only from a feedback loop in
    NEWSLETTER_FEEDBACK_LOOP_SOURCES; an ESP's signed webhook (mailed_from None) is its own.
    """
    # Values from outside may hold a NUL, which PostgreSQL refuses in text: such a value
    # names nobody.
    named = {a.strip().lower() for a in addresses if a and "\x00" not in a}
    if message_id and "\x00" in message_id:
        message_id = None
    if (
        kind == BounceKind.COMPLAINT
        and mailed_from is not None
        and not is_feedback_loop(mailed_from, settings)
    ):
        log.warning("complaint mailed from %.100s, no feedback loop of ours", mailed_from)
        return Proof(None, None, "complaint from a source that is not a feedback loop")
    for token in verp_tokens:
        try:
            claims = read_verp_token(settings.secret_key, token)
        except TokenError:
            log.warning("bounce with a VERP token we did not make: %s", token[:20])
            continue
        if session.get(Subscriber, claims.subscriber_id) is None:
            continue
        delivery = session.get(Delivery, claims.delivery_id) if claims.delivery_id else None
        if delivery is not None and delivery.subscriber_id != claims.subscriber_id:
            log.warning("VERP token whose delivery %s is another reader's", delivery.id)
            continue
        return Proof(claims.subscriber_id, delivery.id if delivery else None, "verp token")
    if message_id:
        row = session.execute(
            select(Delivery.id, Delivery.subscriber_id, Subscriber.email_key)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(
                Delivery.message_id == message_id,
                Delivery.sent_at.is_not(None),
                Delivery.status.in_([DeliveryStatus.SENT, DeliveryStatus.BOUNCED]),
            )
        ).first()
        if row is not None and (not named or row.email_key in named):
            return Proof(row.subscriber_id, row.id, "message id")
    return Proof(None, None, "no VERP token of ours, no Message-ID of a delivery sent there")


def is_feedback_loop(sender_domain: str, settings: Settings) -> bool:
    """Whether a mailed complaint comes from a feedback loop the operator named (or below it)."""
    domain = sender_domain.strip().lower().rstrip(".")
    if not domain:
        return False
    for source in settings.feedback_loop_sources:
        source = source.strip().lower().rstrip(".")
        if source and (domain == source or domain.endswith("." + source)):
            return True
    return False


@dataclass(frozen=True)
class UnverifiedReport:
    """A report that proved no delivery of ours, as the operator sees it (address masked)."""

    kind: str
    source: str
    recipient: str
    status: str | None
    created_at: datetime


def unverified_reports(
    session: Session, *, limit: int = 10, days: int = 30, now: datetime | None = None
) -> tuple[int, list[UnverifiedReport]]:
    """How many reports of the last `days` proved nothing, and the newest of them.

    Many of them may mean a forger at work, or a door whose proof is missing (a provider
    whose events do not carry our Message-ID, a feedback loop not configured).
    """
    since = (now or utcnow()) - timedelta(days=days)
    recent = BounceEvent.verified.is_(False), BounceEvent.created_at >= since
    total = int(session.scalar(select(func.count()).select_from(BounceEvent).where(*recent)) or 0)
    rows = session.execute(
        select(
            BounceEvent.kind,
            BounceEvent.source,
            BounceEvent.recipient,
            BounceEvent.status,
            BounceEvent.created_at,
        )
        .where(*recent)
        .order_by(BounceEvent.created_at.desc(), BounceEvent.id.desc())
        .limit(limit)
    ).all()
    return total, [
        UnverifiedReport(
            kind=row.kind,
            source=row.source,
            recipient=mask_address(row.recipient) if row.recipient else "",
            status=row.status,
            created_at=row.created_at,
        )
        for row in rows
    ]


def reset_bounces(session: Session, *, subscriber_id: int, now: datetime | None = None) -> None:
    """An operator's fresh start: deliverable again, soft score from zero, off the list."""

    subscriber = get_subscriber(session, subscriber_id)
    if subscriber.status == SubscriberStatus.BOUNCED:
        subscriber.status = SubscriberStatus.ACTIVE
        session.execute(
            delete(Suppression).where(
                Suppression.email_hash == email_hash(subscriber.email_key),
                Suppression.reason == "bounced",
            )
        )
    subscriber.soft_bounce_count = 0
    record_event(session, subscriber, EventKind.BOUNCES_RESET)
    session.flush()


def purge_raw(session: Session, *, older_than: timedelta, now: datetime | None = None) -> int:
    """Clear the raw source of events older than the retention; their facts stay."""
    cutoff = (now or utcnow()) - older_than
    result = session.execute(
        update(BounceEvent)
        .where(BounceEvent.created_at < cutoff, BounceEvent.raw.is_not(None))
        .values(raw=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def forget_reader(session: Session, *, subscriber_id: int, email_key: str) -> None:
    """Erasure: no bounce record keeps the reader's address, their report or their link.

    Their events (by subscriber, or naming their address as the recipient, matched or
    not) keep only the facts the dashboard counts (kind, source, status, time, delivery);
    any other event that quotes the address has it replaced in its text.
    """
    session.execute(
        update(BounceEvent)
        .where(
            or_(
                BounceEvent.subscriber_id == subscriber_id,
                func.lower(BounceEvent.recipient) == email_key,
            )
        )
        .values(subscriber_id=None, recipient=None, diagnostic=None, raw=None)
        .execution_options(synchronize_session=False)
    )
    quoting = session.execute(
        select(BounceEvent.id, BounceEvent.diagnostic, BounceEvent.raw).where(
            or_(
                func.lower(BounceEvent.diagnostic).contains(email_key, autoescape=True),
                func.lower(BounceEvent.raw).contains(email_key, autoescape=True),
            )
        )
    ).all()
    for event_id, diagnostic, raw in quoting:
        session.execute(
            update(BounceEvent)
            .where(BounceEvent.id == event_id)
            .values(
                diagnostic=diagnostic and without_address(diagnostic, email_key),
                raw=raw and without_address(raw, email_key),
            )
            .execution_options(synchronize_session=False)
        )


def event_key_of(raw: bytes) -> str:
    """A mailed bounce's identity: the same message fetched twice counts once."""
    return "mail:" + hashlib.sha256(raw).hexdigest()


def _act(
    session: Session,
    subscriber: Subscriber,
    *,
    kind: str,
    delivery_id: int | None,
    status: str | None,
    diagnostic: str | None,
    source: str,
    soft_limit: int,
    soft_window: timedelta,
    now: datetime,
) -> str:
    detail: dict[str, Any] = {
        "source": source,
        "status": status,
        "diagnostic": (diagnostic or "")[:300],
    }
    if kind == BounceKind.COMPLAINT:
        unsubscribe(session, subscriber_id=subscriber.id, source=f"complaint ({source})", now=now)
        subscriber.status = SubscriberStatus.COMPLAINED
        suppress(
            session, email_key=subscriber.email_key, email=subscriber.email, reason="complaint"
        )
        record_event(session, subscriber, EventKind.COMPLAINED, delivery_id=delivery_id, **detail)
        return "unsubscribed and suppressed"
    if kind == BounceKind.UNSUBSCRIBE:
        left = unsubscribe(session, subscriber_id=subscriber.id, source=source, now=now)
        return "unsubscribed" if left else "already unsubscribed"
    record_event(
        session, subscriber, EventKind.BOUNCED, delivery_id=delivery_id, bounce=kind, **detail
    )
    if kind == BounceKind.HARD:
        _bounce_delivery(session, delivery_id)
        _suppress_bounced(session, subscriber, diagnostic)
        return "suppressed"
    score = _soft_score(session, subscriber, window=soft_window, now=now)
    subscriber.soft_bounce_count = score
    if score >= soft_limit:
        _bounce_delivery(session, delivery_id)
        _suppress_bounced(session, subscriber, f"{score} soft bounces: {diagnostic or ''}")
        return f"suppressed after {score} soft bounces"
    return f"scored {score} of {soft_limit}"


def _soft_score(
    session: Session, subscriber: Subscriber, *, window: timedelta, now: datetime
) -> int:
    """Soft bounces in the window since the reader's last successful delivery or reset."""
    since = now - window
    last_sent = session.scalar(
        select(func.max(Delivery.sent_at)).where(
            Delivery.subscriber_id == subscriber.id, Delivery.status == DeliveryStatus.SENT
        )
    )
    last_reset = session.scalar(
        select(func.max(SubscriberEvent.created_at)).where(
            SubscriberEvent.subscriber_id == subscriber.id,
            SubscriberEvent.kind == EventKind.BOUNCES_RESET,
        )
    )
    # A delivery that went out *after* a bounce resets the score; the bounce of the very
    # delivery that was "sent" comes later than its sent_at, so it still counts.
    for moment in (last_sent, last_reset):
        if moment is not None and moment > since:
            since = moment
    return int(
        session.scalar(
            select(func.count())
            .select_from(BounceEvent)
            .where(
                BounceEvent.subscriber_id == subscriber.id,
                BounceEvent.kind == BounceKind.SOFT,
                BounceEvent.verified.is_(True),
                BounceEvent.created_at >= since,
            )
        )
        or 0
    )


def _suppress_bounced(session: Session, subscriber: Subscriber, why: str | None) -> None:
    subscriber.status = SubscriberStatus.BOUNCED
    suppress(
        session,
        email_key=subscriber.email_key,
        email=subscriber.email,
        reason="bounced",
        detail=(why or "")[:1000],
    )


def _bounce_delivery(session: Session, delivery_id: int | None) -> None:
    """The digest's counts move the delivery from sent (or sending) to bounced."""
    if delivery_id is None:
        return
    ledger.mark_bounced_later(session, delivery_id=delivery_id)


def process_message(
    session: Session,
    raw: bytes,
    *,
    settings: Settings,
    envelope_recipients: Sequence[str] = (),
    source: str = "mail",
    now: datetime | None = None,
) -> BounceOutcome:
    """A message that came back (DSN, ARF complaint, auto-reply, mailed unsubscribe)."""
    unsubscribe_token = _unsubscribe_token(envelope_recipients, settings)
    if unsubscribe_token is not None:
        return process_mailed_unsubscribe(
            session, token=unsubscribe_token, settings=settings, now=now
        )
    from newsletter.bounces.parsing import parse_bounce  # the parser is only needed here

    report = parse_bounce(raw, envelope_recipients=envelope_recipients)
    if report.kind == "none":
        return BounceOutcome("none", "ignored", detail="not a bounce (an auto-reply?)")
    proof = find_reader(
        session,
        settings=settings,
        kind=report.kind,
        verp_tokens=report.verp_tokens,
        addresses=report.recipients,
        message_id=report.original_message_id,
        mailed_from=report.sender_domain or "",
    )
    if not proof.verified:
        log.info(
            "%s report that proves no delivery of ours (%s: %s); kept unverified",
            report.kind,
            proof.why,
            ", ".join(mask_address(r) for r in report.recipients[:5]),
        )
    return record(
        session,
        kind=report.kind,
        source=source,
        subscriber_id=proof.subscriber_id,
        delivery_id=proof.delivery_id,
        recipient=report.recipients[0] if report.recipients else None,
        status=report.status,
        diagnostic=report.diagnostic,
        raw=raw[:RAW_KEPT].decode("utf-8", "replace"),
        event_key=event_key_of(raw),
        verified=proof.verified,
        soft_limit=settings.soft_bounce_limit,
        soft_window=timedelta(days=settings.soft_bounce_window_days),
        now=now,
    )


def process_mailed_unsubscribe(
    session: Session, *, token: str, settings: Settings, now: datetime | None = None
) -> BounceOutcome:
    """The mailto: of List-Unsubscribe: `unsubscribe+<token>@<domain>` leaves everything."""
    try:
        claims = read_verp_token(settings.secret_key, token)
    except TokenError:
        log.warning("mailed unsubscribe with a token we did not make: %s", token[:60])
        return BounceOutcome(BounceKind.UNSUBSCRIBE, "ignored", detail="forged token")
    if session.get(Subscriber, claims.subscriber_id) is None:
        return BounceOutcome(BounceKind.UNSUBSCRIBE, "ignored", detail="reader erased")
    left = unsubscribe(
        session, subscriber_id=claims.subscriber_id, source="mailto unsubscribe", now=now
    )
    return BounceOutcome(
        BounceKind.UNSUBSCRIBE,
        "unsubscribed" if left else "already unsubscribed",
        claims.subscriber_id,
    )


def record_provider_event(
    session: Session,
    *,
    provider: str,
    event_id: str,
    kind: str,
    settings: Settings,
    email: str | None = None,
    message_id: str | None = None,
    status: str | None = None,
    diagnostic: str | None = None,
    raw: str = "",
    now: datetime | None = None,
) -> BounceOutcome:
    """An ESP's bounce or complaint (a verified webhook); the same event id twice counts once.

    The provider's signature vouches for where the event comes from, not for whom it is
    about: it acts only when its message id is a delivery sent to its address.
    """
    proof = find_reader(
        session,
        settings=settings,
        kind=kind,
        verp_tokens=[],
        addresses=[email] if email else [],
        message_id=_bracketed(message_id),
    )
    return record(
        session,
        kind=kind,
        source=provider,
        subscriber_id=proof.subscriber_id,
        delivery_id=proof.delivery_id,
        recipient=email,
        status=status,
        diagnostic=diagnostic,
        raw=raw,
        event_key=f"{provider}:{event_id}"[:300],
        verified=proof.verified,
        soft_limit=settings.soft_bounce_limit,
        soft_window=timedelta(days=settings.soft_bounce_window_days),
        now=now,
    )


def claim_webhook_token(
    session: Session, *, provider: str, token: str, max_age: timedelta, now: datetime | None = None
) -> bool:
    """Take a webhook signature's one-time token: True the first time, in any process.

    The unique key decides between processes racing with the same token; tokens older than
    the signature's freshness window are purged (their signatures are refused as stale).
    """
    now = now or utcnow()
    session.execute(
        delete(WebhookToken)
        .where(WebhookToken.seen_at < now - max_age - timedelta(minutes=1))
        .execution_options(synchronize_session=False)
    )
    try:
        with session.begin_nested():
            session.add(WebhookToken(provider=provider, token=token, seen_at=now))
    except IntegrityError:
        return False
    return True


def accepts_recipient(address: str, settings: Settings) -> bool:
    """Whether the inbound receiver takes mail for this address (it is no open relay)."""
    return read_reader_address(address, mail_domain=settings.mail_domain) is not None


def _unsubscribe_token(recipients: Sequence[str], settings: Settings) -> str | None:
    for address in recipients:
        ours = read_reader_address(address, mail_domain=settings.mail_domain)
        if ours is not None and ours.kind == AddressKind.UNSUBSCRIBE:
            return ours.token
    return None


def _bracketed(message_id: str | None) -> str | None:
    if not message_id:
        return None
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"
