"""Celery tasks: thin adapters that load settings and a session and call the services.

The tasks are registered on the one Celery app (newsletter.app.queue) under the names the
jobs of newsletter.app.jobs give; web and CLI send those jobs by name and never import this.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import Task
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.analytics import recording
from newsletter.analytics.buffer import HitBuffer, hit_buffer
from newsletter.app import pipeline, readers
from newsletter.app.queue import CeleryQueue
from newsletter.app.queue import celery as app
from newsletter.app.unit_of_work import unit_of_work
from newsletter.articles import feeds
from newsletter.bounces import policy as bounces
from newsletter.bounces.doors import mailbox
from newsletter.core import db
from newsletter.core.config import Settings, get_settings
from newsletter.core.validation import InvalidInput
from newsletter.digests import batch as delivery
from newsletter.digests import trial
from newsletter.digests.batch import VariantKey
from newsletter.digests.render import PreparedVariant
from newsletter.email.render import OutgoingMessage
from newsletter.sending import relays, single, workers
from newsletter.sending.ratelimit import LocalRateLimiter, NoLimit, RateLimiter, RedisRateLimiter
from newsletter.subscribers import notices
from newsletter.subscribers.store import SignupForm, UnknownSubscriber

log = logging.getLogger("newsletter.tasks")

# No cap of Celery's own on the notices' retries: the retry policy (sending/relays.py,
# NEWSLETTER_MAX_ATTEMPTS) decides when a notice is given up.
MAX_RETRIES: int | None = None
# A signup that hits a conflict is tried again a few times, a second apart.
SIGNUP_RETRIES = 3


@app.task(name="newsletter.sign_up", bind=True, max_retries=SIGNUP_RETRIES)
def sign_up(self: Task, form: dict[str, Any], ip: str | None) -> str:
    """Record a signup the signup page took, and queue what it calls for (see
    app.readers.record_signup); what happened, in a word, for the worker's log."""
    settings = get_settings()
    try:
        with unit_of_work() as work:
            outcome = readers.record_signup(work, form=SignupForm(**form), ip=ip, settings=settings)
    except InvalidInput as exc:
        # Checked by the page already: a newsletter deleted by hand since, or a database
        # restored under a running web process (newsletters.check_slugs). Nothing to retry.
        log.warning("signup not recorded: %s", exc.message)
        return "invalid"
    except SQLAlchemyError as exc:
        # Two signups for one new address at once: the second finds the first's row when
        # tried again. The database's error names the address: only its kind is logged.
        conflict = RuntimeError(f"signup not recorded: {type(exc).__name__}")
        raise self.retry(exc=conflict, countdown=1) from None
    return readers.signup_summary(outcome)


@app.task(name="newsletter.send_confirmation", bind=True, max_retries=MAX_RETRIES)
def send_confirmation(
    self: Task, subscriber_id: int, newsletter_ids: list[int] | None = None
) -> str:
    """Send the double opt-in email (checked again here: the reader may have left)."""
    return _send_notice(
        self,
        lambda session, settings: notices.confirmation_message(
            session, subscriber_id=subscriber_id, newsletter_ids=newsletter_ids, settings=settings
        ),
        subscriber_id,
    )


@app.task(name="newsletter.send_welcome", bind=True, max_retries=MAX_RETRIES)
def send_welcome(self: Task, subscriber_id: int, newsletter_ids: list[int]) -> str:
    return _send_notice(
        self,
        lambda session, settings: notices.welcome_message(
            session, subscriber_id=subscriber_id, newsletter_ids=newsletter_ids, settings=settings
        ),
        subscriber_id,
    )


@app.task(name="newsletter.send_goodbye", bind=True, max_retries=MAX_RETRIES)
def send_goodbye(self: Task, subscriber_id: int, newsletter_ids: list[int]) -> str:
    return _send_notice(
        self,
        lambda session, settings: notices.goodbye_message(
            session, subscriber_id=subscriber_id, newsletter_ids=newsletter_ids, settings=settings
        ),
        subscriber_id,
    )


@app.task(name="newsletter.send_data_link", bind=True, max_retries=MAX_RETRIES)
def send_data_link(self: Task, subscriber_id: int, action: str) -> str:
    """The link a reader asked for, to their data or to confirm its erasure."""
    return _send_notice(
        self,
        lambda session, settings: notices.data_link_message(
            session, subscriber_id=subscriber_id, action=action, settings=settings
        ),
        subscriber_id,
    )


@app.task(name="newsletter.send_test")
def send_test(test_send_id: int) -> str:
    """An editor's test send, once: what the relay said is recorded, for the editor to read
    (no retry later: a test is wanted now, and the editor can ask again)."""
    settings = get_settings()

    def send(message: OutgoingMessage) -> str | None:
        outcome = single.send_single(
            message, settings=settings, subscriber_id=0, attempt=0, what="newsletter.send_test"
        )
        if outcome.status == single.SingleStatus.SENT:
            return None
        return str(outcome.error) if outcome.error else outcome.status.value

    with db.session_scope() as session:
        return str(
            trial.send_test(session, test_send_id=test_send_id, settings=settings, send=send).status
        )


def _send_notice(
    task: Task,
    build: Callable[[Session, Settings], OutgoingMessage | None],
    subscriber_id: int,
) -> str:
    settings = get_settings()
    try:
        with db.session_scope() as session:
            message = build(session, settings)
    except UnknownSubscriber:
        log.info(
            "subscriber %s is gone (erased?); nothing sent",
            subscriber_id,
            extra={"subscriber_id": subscriber_id},
        )
        return "gone"
    if message is None:
        log.info(
            "subscriber %s may not receive %s now; nothing sent",
            subscriber_id,
            task.name,
            extra={"subscriber_id": subscriber_id},
        )
        return "skipped"
    outcome = single.send_single(
        message,
        settings=settings,
        subscriber_id=subscriber_id,
        attempt=task.request.retries,
        what=task.name,
    )
    if outcome.status == single.SingleStatus.RETRY:
        raise task.retry(exc=outcome.error, countdown=outcome.retry_in)
    return outcome.status.value


@app.task(name="newsletter.fetch_feeds")
def fetch_feeds() -> list[dict[str, object]]:
    """The beat tick's feed poll: every configured feed, with conditional requests."""
    settings = get_settings()
    if not settings.feeds:
        return []
    with db.session_scope() as session:
        reports = feeds.fetch_configured_feeds(session, settings.feeds)
    for report in reports:
        log.info("feed %s: %s (%d new)", report.url, report.status, report.imported)
    return [report.as_dict() for report in reports]


# --- digests -------------------------------------------------------------------------

# Rendered variants kept by this worker process, so that the batches of one digest
# render each variant once here, not once per batch.
_prepared_variants: dict[VariantKey, PreparedVariant] = {}
_limiter: RateLimiter | None = None
# Held while the process's one limiter or hit buffer is made.
_making = threading.Lock()
# The jobs tasks queue in turn (a digest's batches, say) go through the worker's own app.
_queue = CeleryQueue(app)


@app.task(name="newsletter.tick")
def tick() -> list[int]:
    """The beat's heartbeat: make recurring digests that are due, start what is due."""
    return pipeline.tick(queue=_queue, settings=get_settings())


def _sweep(settings: Settings) -> None:
    """Queue again what lost its task (a broker restarted empty, a machine gone)."""
    pipeline.sweep(queue=_queue, settings=settings)


@app.task(name="newsletter.dispatch_digest")
def dispatch_digest(digest_id: int) -> int:
    """Walk the eligible readers page by page; one send_batch task per page."""
    return pipeline.dispatch_digest(digest_id=digest_id, queue=_queue, settings=get_settings())


@app.task(name="newsletter.send_batch", bind=True, max_retries=None)
def send_batch(self: Task, digest_id: int, delivery_ids: list[int]) -> dict[str, object]:
    """Send one batch over one SMTP session; try the temporary failures again later."""
    settings = get_settings()
    relay = relays.relay_for_batch(settings, delivery_ids)
    session = db.new_session()
    try:
        outcome = delivery.send_batch(
            session,
            digest_id=digest_id,
            delivery_ids=delivery_ids,
            settings=settings,
            claimant=workers.claimant(str(self.request.id)),
            limiter=_rate_limiter(settings),
            relay=relay,
            variants=_prepared_variants,
        )
    finally:
        session.close()
    if len(_prepared_variants) > 256:
        _prepared_variants.clear()
    log.info(
        "digest %s: batch of %d: %d sent, %d bounced, %d failed, %d skipped, %d to retry%s",
        digest_id,
        len(delivery_ids),
        outcome.sent,
        outcome.bounced,
        outcome.failed,
        outcome.skipped,
        len(outcome.retry),
        f" ({outcome.stopped})" if outcome.stopped else "",
        extra={"digest_id": digest_id},
    )
    if outcome.retry:
        countdown = relays.batch_retry_in(settings, wait=outcome.wait, retries=self.request.retries)
        raise self.retry(args=(digest_id, outcome.retry), countdown=countdown)
    return {"sent": outcome.sent, "bounced": outcome.bounced, "failed": outcome.failed}


def _rate_limiter(settings: Settings) -> RateLimiter:
    global _limiter
    with _making:  # one for the process, even when its pool is threads (SQLite)
        if _limiter is None:
            _limiter = _new_rate_limiter(settings)
        return _limiter


def _new_rate_limiter(settings: Settings) -> RateLimiter:
    if not (settings.rate_per_second or settings.rate_per_hour):
        return NoLimit()
    if settings.uses_redis:
        return RedisRateLimiter(
            settings.broker_url,
            per_second=settings.rate_per_second,
            per_hour=settings.rate_per_hour,
            prefix=f"{settings.redis_key_prefix}nl:rate",
        )
    return LocalRateLimiter(per_second=settings.rate_per_second, per_hour=settings.rate_per_hour)


# --- bounces -------------------------------------------------------------------------


@app.task(name="newsletter.process_inbound")
def process_inbound(raw_base64: str, recipients: list[str]) -> str:
    """A message the inbound receiver (or a mailbox poll) took: bounce, complaint, unsubscribe."""
    from newsletter.bounces.parsing import BounceParseError

    raw = base64.b64decode(raw_base64)
    try:
        with db.session_scope() as session:
            outcome = bounces.process_message(
                session, raw, settings=get_settings(), envelope_recipients=recipients
            )
    except BounceParseError as exc:
        log.warning("inbound message refused: %s", exc)
        return "refused"
    return outcome.action


@app.task(name="newsletter.poll_bounce_mailbox")
def poll_bounce_mailbox() -> int:
    """The beat's look into NEWSLETTER_BOUNCE_IMAP_URL, when one is set."""
    settings = get_settings()
    if not settings.bounce_imap_url:
        return 0
    return mailbox.poll_imap(
        settings.bounce_imap_url,
        lambda raw: pipeline.receive_inbound(queue=_queue, raw=raw, recipients=[]),
    )


@app.task(name="newsletter.record_link_hits")
def record_link_hits() -> str:
    """Clicks and opens from the buffer into the database (analytics/recording.py)."""
    settings = get_settings()
    recorded = pipeline.record_link_hits(buffer=_link_hits(settings), settings=settings)
    if not (recorded.reader or recorded.machine or recorded.waiting):
        return ""  # nothing: the log keeps quiet (core.logs.QuietRoutine)
    return f"{recorded.reader} reader, {recorded.machine} machine; {recorded.waiting} waiting"


@app.task(name="newsletter.purge_link_events")
def purge_link_events() -> int:
    """Clicks and opens older than NEWSLETTER_ANALYTICS_DAYS deleted."""
    settings = get_settings()
    with db.session_scope() as session:
        deleted = recording.purge_old(session, settings=settings)
        session.commit()
    return deleted


_hits: HitBuffer | None = None


def _link_hits(settings: Settings) -> HitBuffer:
    # One per worker process: its Redis connections are kept from run to run.
    global _hits
    with _making:
        if _hits is None:
            _hits = hit_buffer(settings)
        return _hits


@app.task(name="newsletter.purge_bounce_sources")
def purge_bounce_sources() -> int:
    settings = get_settings()
    with db.session_scope() as session:
        return bounces.purge_raw(session, older_than=timedelta(days=settings.bounce_raw_days))
