"""Sending a batch of a digest's deliveries over one SMTP session, each one exactly once."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    Engine,
    select,
)
from sqlalchemy.orm import Session

from newsletter.bounces import policy as bounces
from newsletter.core import metrics
from newsletter.core.config import Settings
from newsletter.core.models import (
    Delivery,
    Digest,
    DigestState,
    DigestVariant,
    Subscriber,
)
from newsletter.digests import lifecycle
from newsletter.digests.render import PreparedVariant, prepare_digest_variant, reader_recipient
from newsletter.email.render import OutgoingMessage
from newsletter.sending import ledger
from newsletter.sending.ledger import FINAL_STATUSES, OPEN_STATUSES, Ledger, mark_bounced
from newsletter.sending.ratelimit import RateLimited, RateLimiter
from newsletter.sending.transport import DeliveryError, SMTPTransport
from newsletter.sending.workers import task_of

log = logging.getLogger("newsletter.delivery")

# A rendered variant, as a worker process keeps it from batch to batch.
# (digest, its start, variant, subject test arm)
VariantKey = tuple[int, datetime | None, int, int | None]

# How often a running batch looks again at its digest's state (paused, cancelled).
STATE_CHECK_EVERY = 25

# About how long one claim group takes to send. Groups grow to it (up to
# settings.delivery_claim_group) on a fast relay, where each claim statement then carries
# many messages, and shrink to one message on a slow one, where a reader who unsubscribes
# must not wait for a long group whose claim came before their unsubscribe.
GROUP_SECONDS = 0.1
# A group still sending this many times GROUP_SECONDS after its claim (the relay slowed
# down mid-group) gives the rest back, to be claimed again in groups of its new pace.
GROUP_OVERRUN = 4


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
    after, a claim group at a time (next_group_size, at most settings.delivery_claim_group),
    so a batch run again — its worker killed, the broker restarted — sends only what was not
    sent, and at most the group in flight can go twice. Whether the reader may still be
    mailed is checked in the claim itself, at send time.
    """
    outcome = BatchOutcome()
    variants = {} if variants is None else variants
    digest = lifecycle.get_digest(session, digest_id)
    if digest.state != DigestState.SENDING:
        outcome.stopped = digest.state
        if digest.state == DigestState.PAUSED:
            outcome.retry = []  # resume enqueues what is left
        session.commit()
        return outcome
    newsletter = digest.newsletter
    ledger.take(
        session,
        digest_id=digest_id,
        delivery_ids=delivery_ids,
        claimant=claimant,
        task=task_of(claimant),
    )
    session.commit()
    pending = _pending(session, digest_id, delivery_ids, claimant)
    session.commit()
    if not pending:
        _finish(session, digest_id)
        return outcome
    engine = session.get_bind()
    assert isinstance(engine, Engine), "a batch needs a session bound to an engine"
    run = _BatchRun(
        session,
        digest=digest,
        settings=settings,
        ledger=Ledger(
            engine,
            newsletter_id=newsletter.id,
            claimant=claimant,
            async_commit=settings.delivery_async_commit,
        ),
        limiter=limiter,
        open_transport=lambda: (
            transport(relay)
            if transport is not None
            else SMTPTransport(relay, timeout=settings.smtp_timeout_seconds)
        ),
        variants=variants,
        outcome=outcome,
    )
    group = settings.delivery_claim_group
    if settings.rate_per_second:
        # A group's tokens are taken before its claim and its messages then go at once: no
        # more of them than the relay takes in a second.
        group = min(group, settings.rate_per_second)
    since_check = start = 0
    size = 1  # the relay's pace is not known yet
    try:
        while start < len(pending):
            if since_check >= STATE_CHECK_EVERY:
                since_check = 0
                state = run.ledger.digest_state(digest_id)
                if state != DigestState.SENDING:
                    outcome.stopped = state
                    break
            handled, go_on = run.send_group(pending[start : start + size])
            since_check += handled
            start += handled
            if not go_on or not handled:
                break
            pace = time.monotonic() - run.claimed_at
            size = next_group_size(size, handled, pace, largest=group)
    except BaseException:
        # An error ends the batch and nothing retries it: what it held and did not send
        # is free again for the sweeper, rather than held by a worker still online.
        run.close_quietly()
        with contextlib.suppress(Exception):
            session.rollback()
            ledger.let_go(session, delivery_ids=[d.id for d in pending], claimant=claimant)
            session.commit()
        raise
    run.close()
    # What this run did not reach (a stop, a lost connection) is tried again too, by
    # whoever comes next: this task's retry, a resume, the sweeper.
    held = [d.id for d in pending]
    ledger.let_go(session, delivery_ids=held, claimant=claimant)
    session.commit()
    done = set(_final_ids(session, held))
    outcome.retry = sorted({i for i in held if i not in done})
    if outcome.stopped in (DigestState.PAUSED, DigestState.CANCELLED):
        # Paused, what is left is the resume's to queue; but a resume that came before
        # this let go found these held and left them: then they are still this batch's.
        now = session.scalar(select(Digest.state).where(Digest.id == digest_id))
        if now != DigestState.SENDING:
            outcome.retry = []
    session.commit()
    _finish(session, digest_id)
    return outcome


def longest_in_flight(settings: Settings) -> float:
    """The longest a claimed delivery can be on its way: a group gives back what it has not
    sent once it overruns, so only the message crossing that line (MAIL, RCPT and DATA each
    within the SMTP timeout) is sent later; and the filling of the group's messages (their
    variants are rendered before the claim), a few milliseconds, with room to spare."""
    return GROUP_SECONDS * GROUP_OVERRUN + 3 * settings.smtp_timeout_seconds + 10


def next_group_size(size: int, handled: int, seconds: float, *, largest: int) -> int:
    """The next claim group's size: as many messages as GROUP_SECONDS holds at the pace of
    the last group, at most twice its size (one fast group proves little), at least one."""
    fits = int(GROUP_SECONDS * handled / seconds) if seconds > 0 else largest
    return max(1, min(largest, 2 * size, fits))


class _BatchRun:
    """One batch's walk over its deliveries, on one SMTP session (opened again if it drops)."""

    def __init__(
        self,
        session: Session,
        *,
        digest: Digest,
        settings: Settings,
        ledger: Ledger,
        limiter: RateLimiter,
        open_transport: Callable[[], SMTPTransport],
        variants: dict[VariantKey, PreparedVariant],
        outcome: BatchOutcome,
    ) -> None:
        self.session = session
        self.digest = digest
        self.settings = settings
        self.ledger = ledger
        self.limiter = limiter
        self.open_transport = open_transport
        self.variants = variants
        self.outcome = outcome
        self.smtp: SMTPTransport | None = None
        self.lost_sessions = 0  # sessions lost in a row, with no message accepted in between
        self.claimed_at = 0.0  # when the last group was claimed (time.monotonic)

    def send_group(self, group: Sequence[_Pending]) -> tuple[int, bool]:
        """Claim a group of deliveries and send each one taken: how many of the group were
        dealt with, and whether the batch goes on. What was claimed and not tried is given
        back: on a stop, on an error, and when the session dropped mid-group (the rest is
        claimed again once a new session is open, never while it opens)."""
        if not self._session_ready(group[0]):
            return 0, False
        # The rate limiter passed before the claim: once claimed, the messages go at once,
        # and an unsubscribe waiting for one (subscribers.sends_in_flight) waits for at
        # most a group's SMTP transactions on an open session.
        allowed = self._acquire(len(group))
        if not allowed:
            return 0, False
        wanted = group[:allowed]
        # Each variant the group needs is rendered before its claim (the first group of a
        # batch may take a while there): a claimed reader waits only for the fills.
        for delivery in wanted:
            self._variant(delivery)
        # The claim checks, at this very moment, that each reader may be mailed
        # (subscribed, deliverable, not suppressed): a suppression added mid-batch stops
        # the next group's message. While its commit waits for the database's disk, the
        # group's messages are filled; none goes out before the claim is in.
        claiming: Future[tuple[set[int], float]] | None = None
        try:
            claiming = self.ledger.claim_soon([delivery.id for delivery in wanted])
            messages = [self._message(delivery) for delivery in wanted]
            claimed, self.claimed_at = claiming.result()
        except BaseException:
            # None of the group went: what the claim took is given back, once it is in
            # (even when a time limit or a signal cut the wait for it short).
            if claiming is not None:
                with contextlib.suppress(Exception):
                    self._unclaim(wanted, _waited_for(claiming)[0])
            raise
        position = 0
        try:
            for position, delivery in enumerate(wanted):
                if delivery.id not in claimed:
                    self.ledger.skip_if_ineligible(delivery.id)
                    self.outcome.skipped += 1
                    metrics.count_delivery("skipped")
                    continue
                if self.smtp is None:
                    # The last message dropped the session; opening another may take
                    # several SMTP timeouts, which the readers of this group must not
                    # wait through. (Never at the first: the session was open then.)
                    self._unclaim(wanted[position:], claimed)
                    return position, True
                if not self._send(delivery, messages[position]):
                    self._unclaim(wanted[position + 1 :], claimed)
                    return position + 1, False
                overrun = time.monotonic() - self.claimed_at > GROUP_SECONDS * GROUP_OVERRUN
                if overrun and position + 1 < len(wanted):
                    # The relay slowed down: a reader of this group who unsubscribes must
                    # not wait through the rest of it at the new pace.
                    self._unclaim(wanted[position + 1 :], claimed)
                    return position + 1, True
        except BaseException:
            # What was not accepted is free to go again; a message accepted and not yet
            # marked stays claimed (sending it again would mail the reader twice).
            accepted = self.ledger.unmarked_ids()
            with contextlib.suppress(Exception):
                self._unclaim([d for d in wanted[position:] if d.id not in accepted], claimed)
            raise
        return allowed, allowed == len(group)

    def _unclaim(self, rest: Sequence[_Pending], claimed: set[int]) -> None:
        self.ledger.unclaim([d.id for d in rest if d.id in claimed])

    def _variant(self, delivery: _Pending) -> PreparedVariant:
        return _variant(self.session, self.digest, delivery, self.settings, self.variants)

    def _message(self, delivery: _Pending) -> OutgoingMessage:
        return _message(self.session, self.digest, delivery, self.settings, self.variants)

    def _send(self, delivery: _Pending, message: OutgoingMessage) -> bool:
        """Send one claimed delivery's message; False when the batch must stop here."""
        assert self.smtp is not None
        try:
            started = time.monotonic()
            self.smtp.send(
                envelope_from=message.envelope_from,
                recipient=message.recipient,
                data=message.data,
                wire_ready=message.wire_ready,
            )
        except DeliveryError as exc:
            return self._refused(delivery, exc)
        self.lost_sessions = 0
        metrics.observe_send(time.monotonic() - started)
        metrics.count_smtp_reply(250)
        self.ledger.sent(delivery.id, message.message_id)
        self.outcome.sent += 1
        metrics.count_delivery("sent")
        return True

    def _session_ready(self, delivery: _Pending) -> bool:
        """The SMTP session open (again, if the last message dropped it), before a claim."""
        if self.smtp is not None:
            return True
        try:
            self.smtp = self.open_transport()
            self.smtp.open()
        except DeliveryError as exc:
            # The relay itself refused us (down, bad credentials): no reader's fault. The
            # delivery keeps why, for the operator.
            self.smtp = None
            self.ledger.note_error(delivery.id, str(exc))
            self.outcome.stopped = f"relay unavailable: {exc}"
            return False
        return True

    def _acquire(self, wanted: int) -> int:
        """How many of `wanted` messages the rate limiter lets go now."""
        for allowed in range(wanted):
            try:
                self.limiter.acquire()
            except RateLimited as exc:
                self.outcome.wait = exc.wait
                self.outcome.stopped = "rate limited"
                return allowed
        return wanted

    def _refused(self, delivery: _Pending, exc: DeliveryError) -> bool:
        """The relay did not take the message: bounce, retry later, or fail for good."""
        if exc.permanent and not exc.bounce:
            # Refused before the relay saw it (newsletter.sending.transport): failed for
            # good, with why, and no fault of the reader's address, so no bounce.
            self.ledger.release(delivery.id, str(exc), max_attempts=0)
            self.outcome.failed += 1
            metrics.count_delivery("failed")
            return True
        metrics.count_smtp_reply(exc.code)
        if exc.permanent:
            self.ledger.flush()
            _mark_bounced(self.session, delivery, str(exc))
            self.outcome.bounced += 1
            metrics.count_delivery("bounced")
            return True
        if self.ledger.release(delivery.id, str(exc), max_attempts=self.settings.max_attempts):
            self.outcome.retry.append(delivery.id)
            metrics.count_delivery("retried")
        else:
            self.outcome.failed += 1
            metrics.count_delivery("failed")
        if exc.code is None or exc.code == 421:
            # The session is gone (dropped, or 421 "closing channel"): the next message
            # opens a new one. Twice in a row, the relay is in trouble: stop, retry later.
            self._drop_session()
            self.lost_sessions += 1
            if self.lost_sessions >= 2:
                self.outcome.stopped = str(exc)
                return False
        return True

    def _drop_session(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
        self.smtp = None

    def close(self) -> None:
        try:
            self.ledger.close()
        finally:
            self._drop_session()

    def close_quietly(self) -> None:
        """Close on the way out of an error: a second error must not hide the first."""
        with contextlib.suppress(Exception):
            self.close()


@dataclass(frozen=True, slots=True)
class _Reader:
    """The columns of a subscriber their copy of the digest needs (render.DigestReader)."""

    id: int
    email: str
    name: str
    language: str
    tracking_refused: bool
    token_version: int


@dataclass(frozen=True, slots=True)
class _Pending:
    """A delivery of the batch still to send, and its reader."""

    id: int
    variant_id: int | None
    arm: int | None
    reader: _Reader


def _pending(
    session: Session, digest_id: int, delivery_ids: Sequence[int], claimant: str
) -> list[_Pending]:
    # Plain rows, not ORM objects: a batch loads hundreds, and building each object and
    # its identity-map entry cost more than the message it is for.
    rows = session.execute(
        select(
            Delivery.id,
            Delivery.variant_id,
            Delivery.arm,
            Subscriber.id,
            Subscriber.email,
            Subscriber.name,
            Subscriber.language,
            Subscriber.tracking_refused,
            Subscriber.token_version,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            ledger.among(session, delivery_ids),
            Delivery.digest_id == digest_id,
            # Held by this batch (ledger.take): queued, or claimed by this very task
            # before its process died, ours to finish.
            Delivery.status.in_(OPEN_STATUSES),
            Delivery.claimed_by == claimant,
        )
        .order_by(Delivery.id)
    ).all()
    return [_Pending(row[0], row[1], row[2], _Reader(*row[3:])) for row in rows]


def _mark_bounced(session: Session, delivery: _Pending, reply: str) -> None:
    subscriber_id = mark_bounced(session, delivery_id=delivery.id, reply=reply)
    if subscriber_id is not None:
        bounces.record_hard_bounce(
            session,
            subscriber_id=subscriber_id,
            delivery_id=delivery.id,
            reply=reply,
            source="smtp",
        )
    session.commit()


def _final_ids(session: Session, delivery_ids: list[int]) -> list[int]:
    return list(
        session.scalars(
            select(Delivery.id).where(
                ledger.among(session, delivery_ids), Delivery.status.in_(FINAL_STATUSES)
            )
        )
    )


def _finish(session: Session, digest_id: int) -> None:
    lifecycle.finish_if_done(session, digest_id=digest_id)
    session.commit()


def _waited_for(claiming: Future[tuple[set[int], float]]) -> tuple[set[int], float]:
    """A claim's result, however often the wait for it is interrupted: it commits anyway,
    on its own thread, and what it took must be known to be given back."""
    while True:
        try:
            return claiming.result()
        except BaseException as exc:
            # The claim's own failure is raised; an interrupt (while it ran, or just as it
            # ended) only means waiting again for what it took.
            if claiming.done() and claiming.exception() is exc:
                raise


def _message(
    session: Session,
    digest: Digest,
    delivery: _Pending,
    settings: Settings,
    variants: dict[VariantKey, PreparedVariant],
) -> OutgoingMessage:
    """The reader's copy, filled into their variant (rendered once per worker process)."""
    prepared = _variant(session, digest, delivery, settings, variants)
    return prepared.template.fill(
        reader_recipient(delivery.reader, digest.newsletter, settings, delivery_id=delivery.id)
    )


def _variant(
    session: Session,
    digest: Digest,
    delivery: _Pending,
    settings: Settings,
    variants: dict[VariantKey, PreparedVariant],
) -> PreparedVariant:
    """The delivery's variant, rendered (once per worker process) and ready to fill."""
    if delivery.variant_id is None:
        raise ValueError(f"delivery {delivery.id} has no variant to send")
    # The digest's start time is in the key: a cache that outlives its digest (ids reused
    # after rows were deleted) must never lend one digest's rendering to another.
    key = (digest.id, digest.started_at, delivery.variant_id, delivery.arm)
    prepared = variants.get(key)
    if prepared is None:
        variant = session.get(DigestVariant, delivery.variant_id)
        if variant is None:
            raise ValueError(f"variant {delivery.variant_id} is gone")
        prepared = prepare_digest_variant(session, digest, variant, settings, arm=delivery.arm)
        session.commit()
        variants[key] = prepared
    return prepared
