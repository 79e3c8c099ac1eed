"""Whether a reader may be mailed: the one definition of invariant 1, as SQL and as a check.

A reader may be mailed a newsletter when they confirmed a subscription to it and have not
left it, mail can reach them (not bounced, not complained), and their address is not on
the suppression list. Everything that decides who gets mail uses these expressions: the
composer walking the list, the claim of each delivery at send time, the skip of a reader
who left, the notices, the dashboard's count of active readers. A suppression added at
any moment is therefore honoured by the very next claim.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, exists, select
from sqlalchemy.orm import Session, aliased

from newsletter.core.models import (
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)


def deliverable(subscriber_id: SQLColumnExpression[int] | int) -> ColumnElement[bool]:
    """Mail can reach this reader at all: active (not bounced or complained), not suppressed."""
    reader = aliased(Subscriber)
    return exists(
        select(reader.id).where(
            reader.id == subscriber_id,
            reader.status == SubscriberStatus.ACTIVE,
            ~exists(select(Suppression.id).where(Suppression.email_hash == reader.email_hash)),
        )
    )


def subscribed(
    subscriber_id: SQLColumnExpression[int] | int,
    newsletter_id: SQLColumnExpression[int] | int | None,
    *,
    status: SubscriptionStatus = SubscriptionStatus.SUBSCRIBED,
    lock: bool = False,
) -> ColumnElement[bool]:
    """The reader holds a subscription in `status` to the newsletter (None: to any).

    With `lock` (PostgreSQL only) the statement holds a share lock on the subscription until
    it commits: an unsubscribe committing at that very moment either makes this statement
    fail or waits for it, and then sees the delivery in flight
    (see subscribers.store.sends_in_flight).
    """
    subscription = aliased(Subscription)
    query = select(subscription.id).where(
        subscription.subscriber_id == subscriber_id, subscription.status == status
    )
    if newsletter_id is not None:
        query = query.where(subscription.newsletter_id == newsletter_id)
    if lock:
        query = query.with_for_update(read=True)
    return exists(query)


def may_be_mailed(
    subscriber_id: SQLColumnExpression[int] | int,
    newsletter_id: SQLColumnExpression[int] | int | None,
    *,
    lock: bool = False,
) -> ColumnElement[bool]:
    """Invariant 1 as one SQL condition: subscribed to the newsletter (None: to any), and
    deliverable. Used in WHERE clauses, so it is checked in the statement that acts."""
    return and_(subscribed(subscriber_id, newsletter_id, lock=lock), deliverable(subscriber_id))


def can_receive(session: Session, *, subscriber_id: int, newsletter_id: int | None) -> bool:
    """Whether this reader may be mailed this newsletter now (None: mail about any of them,
    as the welcome email is)."""
    return bool(session.scalar(select(may_be_mailed(subscriber_id, newsletter_id))))


def can_be_asked_to_confirm(session: Session, *, subscriber_id: int) -> bool:
    """Whether a confirmation email may go: deliverable, with a subscription pending."""
    condition = and_(
        subscribed(subscriber_id, None, status=SubscriptionStatus.PENDING),
        deliverable(subscriber_id),
    )
    return bool(session.scalar(select(condition)))


def can_be_told_goodbye(session: Session, *, subscriber_id: int) -> bool:
    """Whether the note confirming an unsubscribe may go: mail can reach the reader at all.

    Only whether they are deliverable: they have just left, so they hold no subscription.
    """
    return bool(session.scalar(select(deliverable(subscriber_id))))
