"""What editors and operators read of a digest: its state, counts, and latest errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Digest,
)
from newsletter.digests import lifecycle


def digest_status(session: Session, digest_id: int) -> dict[str, Any]:
    """What editors see: state, times, and how many deliveries stand where."""
    digest = lifecycle.get_digest(session, digest_id)
    return _status(digest, _counts_by_digest(session, [digest_id]).get(digest_id, {}))


def list_digests(
    session: Session, *, limit: int, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """A page of digests, newest first, each as `digest_status` gives it; and how many in all."""
    total = int(session.scalar(select(func.count()).select_from(Digest)) or 0)
    found = list(
        session.scalars(select(Digest).order_by(Digest.id.desc()).limit(limit).offset(offset))
    )
    counts = _counts_by_digest(session, [digest.id for digest in found])
    return [_status(digest, counts.get(digest.id, {})) for digest in found], total


def _status(digest: Digest, by_status: dict[str, int]) -> dict[str, Any]:
    counts = {
        "total": sum(by_status.values()),
        "queued": by_status.get(DeliveryStatus.QUEUED, 0)
        + by_status.get(DeliveryStatus.SENDING, 0),
        "sent": by_status.get(DeliveryStatus.SENT, 0),
        "failed": by_status.get(DeliveryStatus.FAILED, 0),
        "skipped": by_status.get(DeliveryStatus.SKIPPED, 0),
        "bounced": by_status.get(DeliveryStatus.BOUNCED, 0),
    }
    return {
        "id": digest.id,
        "newsletter": digest.newsletter.slug,
        "state": digest.state,
        "subject": digest.subject,
        "since": _iso(digest.since),
        "until": _iso(digest.until),
        "scheduled_for": _iso(digest.scheduled_for),
        "counts": counts,
        "started_at": _iso(digest.started_at),
        "finished_at": _iso(digest.finished_at),
        "note": digest.note,
    }


def _counts_by_digest(session: Session, digest_ids: list[int]) -> dict[int, dict[str, int]]:
    """How many deliveries of each digest stand in each status, in one grouped query."""
    if not digest_ids:
        return {}
    rows = session.execute(
        select(Delivery.digest_id, Delivery.status, func.count())
        .where(Delivery.digest_id.in_(digest_ids))
        .group_by(Delivery.digest_id, Delivery.status)
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for digest_id, status, count in rows:
        counts.setdefault(digest_id, {})[status] = count
    return counts


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
