"""Bounces and complaints: what a failed delivery does to its reader."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from newsletter.models import EventKind, SubscriberStatus, utcnow
from newsletter.subscribers import get_subscriber, record_event, suppress


def record_hard_bounce(
    session: Session,
    *,
    subscriber_id: int,
    delivery_id: int | None,
    reply: str,
    source: str,
    now: datetime | None = None,
) -> None:
    """A permanent failure: the reader is marked bounced and suppressed at once."""
    subscriber = get_subscriber(session, subscriber_id)
    subscriber.status = SubscriberStatus.BOUNCED
    suppress(
        session,
        email_key=subscriber.email_key,
        email=subscriber.email,
        reason="bounced",
        detail=reply[:1000],
        now=now or utcnow(),
    )
    record_event(
        session,
        subscriber,
        EventKind.BOUNCED,
        delivery_id=delivery_id,
        bounce="hard",
        source=source,
        reply=reply[:1000],
    )
