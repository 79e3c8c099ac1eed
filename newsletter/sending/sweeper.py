"""The sweeper: what lost its task (a worker machine gone, a broker restarted empty) is
found again and queued for the workers still there."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.clock import utcnow
from newsletter.core.models import Delivery, Digest, DigestState
from newsletter.sending import ledger, workers


def stale_batches(
    session: Session,
    *,
    stale_after: timedelta,
    size: int,
    lost_after: timedelta,
    now: datetime | None = None,
) -> list[tuple[int, list[int]]]:
    """Deliveries nobody has touched for `stale_after`, in batches to queue again.

    Their task was lost (a broker that restarted without persistence, a worker machine
    gone); queuing them again is safe, because a delivery is sent only by whoever claims
    it. Claims that old are given back first.
    """
    now = now or utcnow()
    online = workers.online_ids(session, lost_after=lost_after, now=workers.clock(session))
    rows = ledger.requeue_stale(
        session, stale_after_cutoff=now - stale_after, now=now, limit=size * 20, keep=online
    )
    return _in_batches(rows, size)


def lost_workers_batches(
    session: Session, *, lost_after: timedelta, size: int, now: datetime | None = None
) -> tuple[list[str], list[tuple[int, list[int]]]]:
    """What workers lost in the last minute held, in batches to queue again at once.

    A worker whose heartbeat stopped (its machine gone, its process group killed) holds its
    batches until the broker gives them back (an hour on Redis) and its claims until they
    go stale: both are given back here, once per lost worker. A slow worker is not lost:
    its main process keeps writing the heartbeat while its pool works.
    """
    now = now or workers.clock(session)
    instances = workers.lost(session, lost_after=lost_after, now=now)
    rows = ledger.reclaim(session, instance_ids=instances, now=now)
    workers.reclaimed(session, instances, now=now)
    return instances, _in_batches(rows, size)


def _in_batches(rows: list[tuple[int, int]], size: int) -> list[tuple[int, list[int]]]:
    """(digest id, delivery id) pairs as batches of at most `size` of one digest each."""
    batches: dict[int, list[list[int]]] = {}
    for digest_id, delivery_id in rows:
        chunks = batches.setdefault(digest_id, [[]])
        if len(chunks[-1]) >= size:
            chunks.append([])
        chunks[-1].append(delivery_id)
    return [(digest_id, chunk) for digest_id, chunks in batches.items() for chunk in chunks]


def stalled_dispatches(
    session: Session, *, stale_after: timedelta, now: datetime | None = None
) -> list[int]:
    """Digests sending but not fully dispatched, whose dispatcher stopped long ago."""
    cutoff = (now or utcnow()) - stale_after
    return list(
        session.scalars(
            select(Digest.id).where(
                Digest.state == DigestState.SENDING,
                Digest.dispatched_at.is_(None),
                Digest.started_at < cutoff,
                ~select(Delivery.id)
                .where(Delivery.digest_id == Digest.id, Delivery.created_at >= cutoff)
                .exists(),
            )
        )
    )
