"""Celery tasks: thin adapters that load settings and a session and call the services."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task
from sqlalchemy.orm import Session

from newsletter import db, feeds, notices
from newsletter.celeryapp import app
from newsletter.config import Settings, get_settings
from newsletter.rendering import OutgoingMessage
from newsletter.subscribers import UnknownSubscriber
from newsletter.transport import DeliveryError, SMTPTransport

log = logging.getLogger("newsletter.tasks")

# Temporary SMTP failures: tried again after 30 s, 60 s, 120 s ... about an hour in all.
RETRY_BACKOFF_SECONDS = 30
MAX_RETRIES = 7


@app.task(name="newsletter.send_confirmation", bind=True, max_retries=MAX_RETRIES)
def send_confirmation(self: Task, subscriber_id: int) -> str:
    """Send the double opt-in email (checked again here: the reader may have left)."""
    return _send_notice(
        self,
        lambda session, settings: notices.confirmation_message(
            session, subscriber_id=subscriber_id, settings=settings
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
        log.info("subscriber %s is gone (erased?); nothing sent", subscriber_id)
        return "gone"
    if message is None:
        log.info("subscriber %s may not receive %s now; nothing sent", subscriber_id, task.name)
        return "skipped"
    try:
        with SMTPTransport(
            settings.effective_smtp_url, timeout=settings.smtp_timeout_seconds
        ) as smtp:
            smtp.send(
                envelope_from=message.envelope_from, recipient=message.recipient, data=message.data
            )
    except DeliveryError as exc:
        if exc.permanent:
            log.warning("%s to subscriber %s refused: %s", task.name, subscriber_id, exc)
            return "refused"
        countdown = RETRY_BACKOFF_SECONDS * 2**task.request.retries
        log.warning(
            "%s to subscriber %s failed, retrying in %ss: %s",
            task.name,
            subscriber_id,
            countdown,
            exc,
        )
        raise task.retry(exc=exc, countdown=countdown) from exc
    log.info("%s sent to subscriber %s as %s", task.name, subscriber_id, message.message_id)
    return "sent"


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
