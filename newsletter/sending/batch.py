"""Sending a batch of a digest's deliveries over one SMTP session, each one exactly once."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Result,
    and_,
    bindparam,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from newsletter.bounces import policy as bounces
from newsletter.core.config import Settings
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    DigestState,
    DigestVariant,
    Subscriber,
    UTCDateTime,
    utcnow,
)
from newsletter.digests import dispatcher as dispatch
from newsletter.digests.composer import Selection, suppressed_keys
from newsletter.digests.render import PreparedVariant, prepare_variant, reader_recipient, view_url
from newsletter.email.render import OutgoingMessage
from newsletter.ops import metrics
from newsletter.sending.ratelimit import RateLimited, RateLimiter
from newsletter.sending.transport import DeliveryError, SMTPTransport

log = logging.getLogger("newsletter.delivery")

# A rendered variant, as a worker process keeps it from batch to batch.
VariantKey = tuple[int, datetime | None, int]

# How often a running batch looks again at its digest's state (paused, cancelled).
STATE_CHECK_EVERY = 25

# How long the ledger keeps trying to reach a database that went away (a restart, a
# failover) before it gives up: a message already accepted must still be marked sent.
RECONNECT_SECONDS = 60.0


@dataclass
class BatchOutcome:
    sent: int = 0
    bounced: int = 0
    failed: int = 0
    skipped: int = 0
    # Deliveries to try again later (temporary failures, a dropped connection, a pause).
    retry: list[int] = field(default_factory=list)
    # When the relay's hourly quota is spent: wait at least this long before retrying.
    wait: float | None = None
    stopped: str | None = None


def send_batch(
    session: Session,
    *,
    digest_id: int,
    delivery_ids: Sequence[int],
    settings: Settings,
    claimant: str,
    limiter: RateLimiter,
    relay: str,
    transport: Callable[[str], SMTPTransport] | None = None,
    variants: dict[VariantKey, PreparedVariant] | None = None,
) -> BatchOutcome:
    """Send what is still to send of these deliveries; record each outcome as it comes.

    Each delivery is claimed (committed) before its message goes out and marked (committed)
    after, so a batch run again — its worker killed, the broker restarted — sends only
    what was not sent, and at most the one message in flight can go twice. Whether the
    reader may still be mailed is checked in the claim itself, at send time.
    """
    outcome = BatchOutcome()
    variants = {} if variants is None else variants
    digest = dispatch.get_digest(session, digest_id)
    if digest.state != DigestState.SENDING:
        outcome.stopped = digest.state
        if digest.state == DigestState.PAUSED:
            outcome.retry = []  # resume enqueues what is left
        session.commit()
        return outcome
    newsletter = digest.newsletter
    pending = _pending(session, digest_id, delivery_ids, claimant)
    suppressed = suppressed_keys(session, [subscriber.email_key for _, subscriber in pending])
    session.commit()
    if not pending:
        _finish(session, digest_id)
        return outcome
    make_transport = transport or (
        lambda url: SMTPTransport(url, timeout=settings.smtp_timeout_seconds)
    )
    smtp: SMTPTransport | None = None
    lost_sessions = 0  # sessions lost in a row, with no message accepted in between
    engine = session.get_bind()
    assert isinstance(engine, Engine), "a batch needs a session bound to an engine"
    ledger = _Ledger(
        engine,
        newsletter_id=newsletter.id,
        claimant=claimant,
        async_commit=settings.delivery_async_commit,
    )
    try:
        for position, (delivery, subscriber) in enumerate(pending):
            if position and position % STATE_CHECK_EVERY == 0:
                state = ledger.digest_state(digest_id)
                if state != DigestState.SENDING:
                    outcome.stopped = state
                    break
            suppressed_now = subscriber.email_key in suppressed
            if not suppressed_now:
                # The session open and the rate limiter passed before the claim: once a
                # delivery is claimed its message goes at once, and an unsubscribe waiting
                # for it (subscribers.sends_in_flight) waits for one SMTP transaction only.
                try:
                    if smtp is None:
                        smtp = make_transport(relay)
                        smtp.open()
                except DeliveryError as exc:
                    # The relay itself refused us (down, bad credentials): no reader's fault.
                    smtp = None
                    ledger.note_error(delivery.id, str(exc))
                    outcome.stopped = f"relay unavailable: {exc}"
                    break
                try:
                    limiter.acquire()
                except RateLimited as exc:
                    outcome.wait = exc.wait
                    outcome.stopped = "rate limited"
                    break
            if suppressed_now or not ledger.claim(delivery.id):
                # A claim also fails when another task holds the delivery (a batch queued
                # twice by the sweeper) and that task may give it back: skipped only when
                # the reader may really not be mailed, or it would be lost.
                ledger.skip_if_still_queued(delivery.id, even_if_eligible=suppressed_now)
                outcome.skipped += 1
                metrics.count_delivery("skipped")
                continue
            message = _message(session, digest, delivery, subscriber, settings, variants)
            assert smtp is not None
            try:
                started = time.monotonic()
                smtp.send(
                    envelope_from=message.envelope_from,
                    recipient=message.recipient,
                    data=message.data,
                )
            except DeliveryError as exc:
                metrics.count_smtp_reply(exc.code)
                if exc.permanent:
                    ledger.flush()
                    _mark_bounced(session, delivery, str(exc))
                    outcome.bounced += 1
                    metrics.count_delivery("bounced")
                    continue
                if ledger.release(delivery.id, str(exc), max_attempts=settings.max_attempts):
                    outcome.retry.append(delivery.id)
                    metrics.count_delivery("retried")
                else:
                    outcome.failed += 1
                    metrics.count_delivery("failed")
                if exc.code is None or exc.code == 421:
                    # The session is gone (dropped, or 421 "closing channel"): the next message
                    # opens a new one. Twice in a row, the relay is in trouble: stop, retry later.
                    if smtp is not None:
                        smtp.close()
                    smtp = None
                    lost_sessions += 1
                    if lost_sessions >= 2:
                        outcome.stopped = str(exc)
                        break
                continue
            lost_sessions = 0
            metrics.observe_send(time.monotonic() - started)
            metrics.count_smtp_reply(250)
            ledger.sent(delivery.id, message.message_id)
            outcome.sent += 1
            metrics.count_delivery("sent")
    finally:
        ledger.close()
        if smtp is not None:
            smtp.close()
    # What this run did not reach (a stop, a lost connection) is tried again too.
    done = set(_final_ids(session, [d.id for d, _ in pending]))
    outcome.retry = sorted({d.id for d, _ in pending if d.id not in done})
    if outcome.stopped in (DigestState.PAUSED, DigestState.CANCELLED):
        outcome.retry = []
    session.commit()
    _finish(session, digest_id)
    return outcome


class _Ledger:
    """Each delivery's claim and outcome, written as it happens on one autocommit connection.

    A claim is durable before its message goes out. On PostgreSQL the mark of the message
    just sent and the claim of the next one travel in one statement: one round trip per
    message instead of two, and still nothing is sent before the previous outcome is kept.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        newsletter_id: int,
        claimant: str,
        async_commit: bool = False,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        self.engine = engine
        self.combined = engine.dialect.name == "postgresql"
        self.async_commit = self.combined and async_commit
        self.reconnect_seconds = reconnect_seconds
        self.connection = self._connect()
        self.newsletter_id = newsletter_id
        self.claimant = claimant
        self._unmarked: tuple[int, str] | None = None

    def _connect(self) -> Connection:
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if self.async_commit:
            connection.exec_driver_sql("SET synchronous_commit = off")
        return connection

    def _execute(self, statement: Executable, params: dict[str, Any] | None = None) -> Result[Any]:
        """Run one statement; when the database went away, reconnect and run it again.

        Every statement here may run twice safely: a mark is the same mark, a claim also
        matches a delivery this claimant holds, a release or a skip sets the same values.
        Giving up at once would lose the mark of a message the relay has accepted, and the
        delivery would be sent again once its claim went stale.
        """
        give_up = time.monotonic() + self.reconnect_seconds
        delay = 0.1
        while True:
            connecting = self.connection.invalidated or self.connection.closed
            try:
                if connecting:
                    self.connection.close()
                    self.connection = self._connect()
                return self.connection.execute(statement, params)
            except DBAPIError as exc:
                # Only a connection that is gone, or a server not back yet: any other error
                # (a deadlock, a timeout, a bug) is the task's to fail and retry.
                lost = exc.connection_invalidated or (
                    connecting and isinstance(exc, OperationalError)
                )
                if not lost or time.monotonic() + delay > give_up:
                    raise
                log.warning(
                    "database connection lost (%s); trying again in %.1f s",
                    type(exc.orig).__name__,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                if not self.connection.closed:  # a new one is opened on the next try
                    with contextlib.suppress(DBAPIError):
                        self.connection.invalidate()

    def claim(self, delivery_id: int) -> bool:
        """Take the delivery if its reader may still be mailed (invariant 1, at send time)."""
        now = utcnow()
        previous_id, previous_message = self._unmarked or (None, None)
        params = {
            "id": delivery_id,
            "claimant": self.claimant,
            "newsletter_id": self.newsletter_id,
            "now": now,
            "previous_id": previous_id,
            "previous_message": previous_message,
        }
        if self.combined:
            result = self._execute(_MARK_AND_CLAIM, params)
        else:
            if previous_id is not None:
                self._execute(_MARK_SENT, params)
            result = self._execute(_CLAIM, params)
        # Forgotten only once written: a mark lost with the connection is written again.
        self._unmarked = None
        return result.first() is not None

    def sent(self, delivery_id: int, message_id: str) -> None:
        """Remember the delivery as sent; written with the next claim, or by flush()."""
        self.flush()
        self._unmarked = (delivery_id, message_id)

    def flush(self) -> None:
        if self._unmarked is not None:
            previous_id, previous_message = self._unmarked
            self._execute(
                _MARK_SENT,
                {"previous_id": previous_id, "previous_message": previous_message, "now": utcnow()},
            )
            self._unmarked = None

    def skip_if_still_queued(self, delivery_id: int, *, even_if_eligible: bool) -> None:
        self.flush()
        params = {
            "id": delivery_id,
            "newsletter_id": self.newsletter_id,
            "claimant": self.claimant,
            "now": utcnow(),
        }
        self._execute(_SKIP if even_if_eligible else _SKIP_INELIGIBLE, params)

    def release(
        self,
        delivery_id: int,
        error: str,
        *,
        max_attempts: int | None = None,
    ) -> bool:
        """Give a claimed delivery back to the queue; False when its attempts are spent."""
        self.flush()
        attempts = (
            self._execute(select(Delivery.attempts).where(Delivery.id == delivery_id)).scalar() or 0
        )
        spent = max_attempts is not None and attempts >= max_attempts
        self._execute(
            update(Delivery)
            # Only while it is ours: run again after a lost connection, this must not
            # hand back a delivery that another task has claimed since.
            .where(
                Delivery.id == delivery_id,
                Delivery.status == DeliveryStatus.SENDING,
                Delivery.claimed_by == self.claimant,
            )
            .values(
                status=DeliveryStatus.FAILED if spent else DeliveryStatus.QUEUED,
                attempts=attempts,
                last_error=error[:2000],
                claimed_by=None,
            )
        )
        return not spent

    def note_error(self, delivery_id: int, error: str) -> None:
        """Keep why a queued delivery could not be tried (the relay refused the session)."""
        self.flush()
        self._execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.QUEUED)
            .values(last_error=error[:2000])
        )

    def digest_state(self, digest_id: int) -> str | None:
        self.flush()
        return self._execute(select(Digest.state).where(Digest.id == digest_id)).scalar()

    def close(self) -> None:
        try:
            self.flush()
            if self.async_commit and not self.connection.invalidated:
                # The connection goes back to a pool others share.
                self.connection.exec_driver_sql("RESET synchronous_commit")
        finally:
            self.connection.close()


def _eligible(*, lock: bool) -> str:
    """Whether a delivery may be claimed: still queued (or ours) and its reader still mailable.

    With `lock` (PostgreSQL) the claim holds a share lock on the reader's subscription until
    it commits: an unsubscribe committing at that very moment either makes the claim fail
    or waits for it, and then sees the delivery in flight (see
    subscribers.sends_in_flight). Without it, the unsubscribe's 200 could come
    between the claim and the message.
    """
    return f"""
    (status = 'queued' OR (status = 'sending' AND claimed_by = :claimant))
    AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.subscriber_id = deliveries.subscriber_id
                AND s.newsletter_id = :newsletter_id AND s.status = 'subscribed'
                {"FOR SHARE" if lock else ""})
    AND EXISTS (SELECT 1 FROM subscribers r WHERE r.id = deliveries.subscriber_id
                AND r.status = 'active')
"""


_CLAIM_SET = """
    status = 'sending', claimed_by = :claimant, claimed_at = :now, attempts = attempts + 1,
    updated_at = :now
"""
_SENT_SET = """
    status = 'sent', message_id = :previous_message, sent_at = :now, last_error = NULL,
    updated_at = :now
"""
# SQLite runs one writer at a time: an unsubscribe and a claim cannot interleave there.
_CLAIM = text(
    f"UPDATE deliveries SET {_CLAIM_SET} WHERE id = :id AND {_eligible(lock=False)} RETURNING id"
).bindparams(bindparam("now", type_=UTCDateTime()))
_MARK_SENT = text(f"UPDATE deliveries SET {_SENT_SET} WHERE id = :previous_id").bindparams(
    bindparam("now", type_=UTCDateTime())
)
# Queued, or claimed by this very task (a claim that went through before the connection
# was lost, then found the reader gone when it ran again): either way not to be sent.
_SKIPPABLE = "(status = 'queued' OR (status = 'sending' AND claimed_by = :claimant))"
_SKIP = text(
    "UPDATE deliveries SET status = 'skipped', last_error = 'no longer subscribed at send time', "
    f"updated_at = :now WHERE id = :id AND {_SKIPPABLE}"
).bindparams(bindparam("now", type_=UTCDateTime()))
_SKIP_INELIGIBLE = text(
    "UPDATE deliveries SET status = 'skipped', last_error = 'no longer subscribed at send time', "
    f"updated_at = :now WHERE id = :id AND {_SKIPPABLE} AND NOT ("
    "EXISTS (SELECT 1 FROM subscriptions s WHERE s.subscriber_id = deliveries.subscriber_id "
    "AND s.newsletter_id = :newsletter_id AND s.status = 'subscribed') "
    "AND EXISTS (SELECT 1 FROM subscribers r WHERE r.id = deliveries.subscriber_id "
    "AND r.status = 'active'))"
).bindparams(bindparam("now", type_=UTCDateTime()))
_MARK_AND_CLAIM = text(
    f"WITH marked AS (UPDATE deliveries SET {_SENT_SET} WHERE id = :previous_id) "
    f"UPDATE deliveries SET {_CLAIM_SET} WHERE id = :id AND {_eligible(lock=True)} RETURNING id"
).bindparams(bindparam("now", type_=UTCDateTime()))


def _pending(
    session: Session, digest_id: int, delivery_ids: Sequence[int], claimant: str
) -> list[tuple[Delivery, Subscriber]]:
    rows = session.execute(
        select(Delivery, Subscriber)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Delivery.id.in_(list(delivery_ids)),
            Delivery.digest_id == digest_id,
            or_(
                Delivery.status == DeliveryStatus.QUEUED,
                # Claimed by this very task before its worker died: ours to finish.
                and_(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_by == claimant),
            ),
        )
        .order_by(Delivery.id)
    ).all()
    return [(delivery, subscriber) for delivery, subscriber in rows]


def _mark_bounced(session: Session, delivery: Delivery, reply: str) -> None:
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery.id)
        .values(status=DeliveryStatus.BOUNCED, last_error=reply[:2000])
        .execution_options(synchronize_session=False)
    )
    if delivery.subscriber_id is not None:
        bounces.record_hard_bounce(
            session,
            subscriber_id=delivery.subscriber_id,
            delivery_id=delivery.id,
            reply=reply,
            source="smtp",
        )
    session.commit()


def _final_ids(session: Session, delivery_ids: list[int]) -> list[int]:
    return list(
        session.scalars(
            select(Delivery.id).where(
                Delivery.id.in_(delivery_ids), Delivery.status.in_(dispatch.FINAL_STATUSES)
            )
        )
    )


def _finish(session: Session, digest_id: int) -> None:
    dispatch.finish_if_done(session, digest_id=digest_id)
    session.commit()


def _message(
    session: Session,
    digest: Digest,
    delivery: Delivery,
    subscriber: Subscriber,
    settings: Settings,
    variants: dict[VariantKey, PreparedVariant],
) -> OutgoingMessage:
    """The reader's copy, filled into their variant (rendered once per worker process)."""
    if delivery.variant_id is None:
        raise ValueError(f"delivery {delivery.id} has no variant to send")
    # The digest's start time is in the key: a cache that outlives its digest (ids reused
    # after rows were deleted) must never lend one digest's rendering to another.
    key = (digest.id, digest.started_at, delivery.variant_id)
    prepared = variants.get(key)
    if prepared is None:
        variant = session.get(DigestVariant, delivery.variant_id)
        if variant is None:
            raise ValueError(f"variant {delivery.variant_id} is gone")
        prepared = prepare_variant(
            session,
            newsletter=digest.newsletter,
            selection=Selection(variant.language, tuple(variant.article_ids)),
            settings=settings,
            subject=digest.subject,
            view_url=view_url(settings, digest.id, variant.id),
            now=digest.started_at,
        )
        session.commit()
        variants[key] = prepared
    return prepared.template.fill(
        reader_recipient(subscriber, digest.newsletter, settings, delivery_id=delivery.id)
    )
