"""The buffer's clicks and opens judged and written in bulk; kept as long as allowed.

Run by the beat every few seconds (`newsletter.record_link_hits`, app/pipeline.py). A
copy's hits wait in the buffer until its last one is a few seconds old, so that a gateway
walking all its links is judged on all of them at once.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from newsletter.analytics import machines
from newsletter.analytics.hits import Hit
from newsletter.core.clock import utcnow
from newsletter.core.config import Settings
from newsletter.core.models import (
    Article,
    Delivery,
    Digest,
    DigestVariant,
    LinkEvent,
    Subscriber,
)

# A copy's hits are judged once its latest is this old (a scan takes a second or two)...
SETTLE_SECONDS = 5.0
# ... or once its first is this old, however busy the copy still is.
LONGEST_WAIT_SECONDS = 300.0


@dataclass(frozen=True)
class Recorded:
    reader: int
    machine: int
    waiting: int  # given back to the buffer, to be judged next time
    dropped: int  # naming a digest or variant that no longer exists
    # Per kind (click, open): (readers', machines').
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)


def record_hits(
    session: Session, hits: Sequence[Hit], *, settings: Settings, now: float | None = None
) -> tuple[Recorded, list[Hit]]:
    """Judge the settled hits among those drained from the buffer and write them in one
    statement; the others are returned, for the buffer to keep. The caller commits (and
    gives every hit back if that fails)."""
    now = time.time() if now is None else now
    ready, waiting = _settled(hits, now)
    rows = _rows(session, machines.judge(ready, sent_at=_sent_at(session, ready)), settings)
    if rows:
        session.execute(insert(LinkEvent), rows)
    machine = sum(1 for row in rows if row["machine"])
    by_kind: dict[str, tuple[int, int]] = {}
    for row in rows:
        by_reader, by_machine = by_kind.get(row["kind"], (0, 0))
        by_kind[row["kind"]] = (
            (by_reader, by_machine + 1) if row["machine"] else (by_reader + 1, by_machine)
        )
    recorded = Recorded(len(rows) - machine, machine, len(waiting), len(ready) - len(rows), by_kind)
    return recorded, waiting


def purge_old(session: Session, *, settings: Settings, now: datetime | None = None) -> int:
    """Delete the clicks and opens older than NEWSLETTER_ANALYTICS_DAYS."""
    cutoff = (now or utcnow()) - timedelta(days=settings.analytics_days)
    result = session.execute(delete(LinkEvent).where(LinkEvent.occurred_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def forget_reader(session: Session, *, subscriber_id: int) -> int:
    """Delete every click and open recorded as one reader's (they turned records off)."""
    result = session.execute(delete(LinkEvent).where(LinkEvent.subscriber_id == subscriber_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def reader_events(session: Session, *, subscriber_id: int) -> list[dict[str, Any]]:
    """A reader's own clicks and opens, for their data export."""
    rows = session.execute(
        select(LinkEvent, Article.title)
        .outerjoin(Article, Article.id == LinkEvent.article_id)
        .where(LinkEvent.subscriber_id == subscriber_id)
        .order_by(LinkEvent.occurred_at, LinkEvent.id)
    ).all()
    return [
        {
            "kind": event.kind,
            "digest": event.digest_id,
            "story": title,
            "machine": event.machine,
            "at": event.occurred_at.isoformat(),
        }
        for event, title in rows
    ]


def _settled(hits: Sequence[Hit], now: float) -> tuple[list[Hit], list[Hit]]:
    by_copy: dict[tuple[int, str], list[Hit]] = defaultdict(list)
    for hit in hits:
        by_copy[(hit.digest_id, hit.copy)].append(hit)
    ready: list[Hit] = []
    waiting: list[Hit] = []
    for copy_hits in by_copy.values():
        latest = max(h.at for h in copy_hits)
        first = min(h.at for h in copy_hits)
        settled = now - latest >= SETTLE_SECONDS or now - first >= LONGEST_WAIT_SECONDS
        (ready if settled else waiting).extend(copy_hits)
    return ready, waiting


def _sent_at(session: Session, hits: Sequence[Hit]) -> dict[int, float]:
    deliveries = {h.delivery_id for h in hits if h.delivery_id is not None}
    if not deliveries:
        return {}
    return {
        delivery_id: sent.timestamp()
        for delivery_id, sent in session.execute(
            select(Delivery.id, Delivery.sent_at).where(Delivery.id.in_(deliveries))
        )
        if sent is not None
    }


def _rows(
    session: Session, judged: Sequence[machines.Judged], settings: Settings
) -> list[dict[str, Any]]:
    """The rows to insert: only hits of variants that still exist, and a reader named
    only if records are on and they have not refused."""
    if not judged:
        return []
    variants = {
        variant_id: language
        for variant_id, language in session.execute(
            select(DigestVariant.id, DigestVariant.language)
            .join(Digest, Digest.id == DigestVariant.digest_id)
            .where(DigestVariant.id.in_({j.hit.variant_id for j in judged}))
        )
    }
    articles = set(
        session.scalars(
            select(Article.id).where(
                Article.id.in_({j.hit.article_id for j in judged if j.hit.article_id})
            )
        )
    )
    consenting = _consenting(session, judged, settings)
    rows = []
    for item in judged:
        hit = item.hit
        if hit.variant_id not in variants:
            continue
        reader = hit.subscriber_id if hit.subscriber_id in consenting else None
        rows.append(
            {
                "kind": hit.kind,
                "digest_id": hit.digest_id,
                "variant_id": hit.variant_id,
                "article_id": hit.article_id if hit.article_id in articles else None,
                "language": variants[hit.variant_id],
                "arm": hit.arm,
                "copy_key": _copy_key(hit, named=reader is not None),
                "subscriber_id": reader,
                "machine": item.machine,
                "reason": item.reason,
                "occurred_at": datetime.fromtimestamp(hit.at, UTC),
            }
        )
    return rows


def _consenting(
    session: Session, judged: Sequence[machines.Judged], settings: Settings
) -> set[int]:
    """The readers named by these hits whose records may be kept now: the publisher keeps
    them, and the reader has not said no since their copy was sent."""
    named = {j.hit.subscriber_id for j in judged if j.hit.subscriber_id is not None}
    if not named or not settings.track_readers:
        return set()
    return set(
        session.scalars(
            select(Subscriber.id).where(
                Subscriber.id.in_(named), Subscriber.tracking_refused.is_(False)
            )
        )
    )


def _copy_key(hit: Hit, *, named: bool) -> str:
    if hit.copy.startswith("d:") and not named:
        # The copy named a reader who has since said no: nothing of theirs is kept (its
        # clicks may then count as several copies' — the price of forgetting).
        return "c:" + secrets.token_urlsafe(9)
    return hit.copy[:40]
