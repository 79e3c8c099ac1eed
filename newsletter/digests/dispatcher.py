"""Digest lifecycle: create, schedule, start, dispatch to batches, pause, resume, cancel."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.core.logs import mask_address, mask_addresses
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    DigestState,
    Subscriber,
    utcnow,
)
from newsletter.core.validation import InvalidInput, clean_text
from newsletter.digests import composer
from newsletter.digests import newsletters as newsletter_store
from newsletter.sending import ledger

log = logging.getLogger("newsletter.dispatch")

# The digest's state machine: what an editor may do in each state. The dashboard shows
# exactly these buttons; the API and the CLI refuse the rest with a sentence.
ACTIONS: dict[str, frozenset[str]] = {
    DigestState.DRAFT: frozenset({"cancel"}),
    DigestState.SCHEDULED: frozenset({"pause", "cancel"}),
    DigestState.SENDING: frozenset({"pause", "cancel"}),
    DigestState.PAUSED: frozenset({"resume", "cancel"}),
    DigestState.SENT: frozenset(),
    DigestState.CANCELLED: frozenset(),
    DigestState.FAILED: frozenset(),
    DigestState.EMPTY: frozenset(),
}
# States a digest never leaves.
FINAL_STATES = frozenset(state for state, actions in ACTIONS.items() if not actions)


def allowed_actions(state: str) -> frozenset[str]:
    """What an editor may do to a digest in this state: pause, resume, cancel."""
    return ACTIONS.get(state, frozenset())


Enqueue = Callable[[int, list[int]], None]


class DigestActionError(ValueError):
    """An editor asked for something the digest's state does not allow; says why."""


class UnknownDigest(LookupError):
    def __init__(self, digest_id: int) -> None:
        super().__init__(f"There is no digest {digest_id}.")


def create_digest(
    session: Session,
    *,
    newsletter_slug: str,
    since: datetime | None = None,
    send_at: datetime | None = None,
    subject: str | None = None,
    schedule_key: str | None = None,
    now: datetime | None = None,
) -> Digest:
    """A digest waiting for its time (now, when no time is given); the beat tick starts it."""
    now = now or utcnow()
    newsletter = newsletter_store.get_by_slug(session, newsletter_slug)
    subject = clean_text("subject", subject, max_length=300) or None
    if since is not None and since > now:
        raise InvalidInput("since", "The window cannot start in the future.")
    digest = Digest(
        newsletter_id=newsletter.id,
        state=DigestState.SCHEDULED,
        subject=subject,
        since=since,
        scheduled_for=send_at or now,
        schedule_key=schedule_key,
    )
    session.add(digest)
    session.flush()
    return digest


def get_digest(session: Session, digest_id: int) -> Digest:
    digest = session.get(Digest, digest_id)
    if digest is None:
        raise UnknownDigest(digest_id)
    return digest


def digest_status(session: Session, digest_id: int) -> dict[str, Any]:
    """What editors see: state, times, and how many deliveries stand where."""
    digest = get_digest(session, digest_id)
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


def delivery_errors(session: Session, *, digest_id: int, limit: int = 10) -> list[dict[str, Any]]:
    """A digest's newest delivery errors (failed, bounced, or waiting for a retry), masked."""
    rows = session.execute(
        select(Delivery, Subscriber.email)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Delivery.digest_id == digest_id,
            Delivery.last_error.is_not(None),
            Delivery.status.in_(
                (DeliveryStatus.FAILED, DeliveryStatus.BOUNCED, DeliveryStatus.QUEUED)
            ),
        )
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "status": delivery.status,
            "attempts": delivery.attempts,
            "address": mask_address(email) if email else None,
            # Relays quote the recipient in their replies: masked there too.
            "error": mask_addresses(delivery.last_error or "")[:300],
            "at": _iso(delivery.updated_at),
        }
        for delivery, email in rows
    ]


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


def start_due(session: Session, *, now: datetime | None = None) -> list[int]:
    """Move digests whose time has come from scheduled to sending; their ids.

    The guarded UPDATE lets only one caller start a digest, however many beats tick.
    """
    now = now or utcnow()
    due = session.scalars(
        select(Digest.id).where(Digest.state == DigestState.SCHEDULED, Digest.scheduled_for <= now)
    ).all()
    started = []
    for digest_id in due:
        result = session.execute(
            update(Digest)
            .where(Digest.id == digest_id, Digest.state == DigestState.SCHEDULED)
            .values(state=DigestState.SENDING, started_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            started.append(digest_id)
    session.flush()
    return started


@dataclass
class DispatchPage:
    queued: list[int]  # delivery ids to hand to one send_batch task
    done: bool


def dispatch_page(
    session: Session, *, digest_id: int, settings: Settings, now: datetime | None = None
) -> DispatchPage:
    """Write the next page of deliveries (bulk, one row per reader) and say which to send.

    The caller commits, then enqueues `queued`; the digest's cursor moves in the same
    commit, so a dispatcher that dies goes on where it stopped.
    """
    now = now or utcnow()
    digest = get_digest(session, digest_id)
    if digest.state != DigestState.SENDING or digest.dispatched_at is not None:
        return DispatchPage([], done=True)
    newsletter = digest.newsletter
    if digest.until is None:
        digest.since, digest.until = composer.digest_window(
            session,
            newsletter_id=newsletter.id,
            since=digest.since,
            now=now,
            first_window=timedelta(hours=settings.digest_first_window_hours),
        )
    candidates = composer.candidate_articles(session, since=digest.since, until=digest.until)  # type: ignore[arg-type]
    if not candidates:
        _finish_empty(
            digest,
            now,
            f"No article was published between {digest.since:%Y-%m-%d %H:%M} and "
            f"{digest.until:%Y-%m-%d %H:%M} UTC, so nothing was sent.",
        )
        return DispatchPage([], done=True)
    readers, last_id = composer.eligible_readers(
        session,
        newsletter_id=newsletter.id,
        after_id=digest.dispatch_cursor,
        limit=settings.batch_size,
    )
    if last_id is None:
        digest.dispatched_at = now
        if not _has_deliveries(session, digest.id):
            _finish_empty(digest, now, "Nobody is subscribed to this newsletter yet.")
        elif _count(session, digest.id, DeliveryStatus.SKIPPED) == _count(session, digest.id):
            _finish_empty(
                digest,
                now,
                f"None of the {len(candidates)} article(s) matched any reader's topics "
                "and language, or every reader had them already.",
            )
        session.flush()
        finish_if_done(session, digest_id=digest.id, now=now)
        return DispatchPage([], done=True)
    selections = composer.select_for_readers(
        session,
        readers,
        candidates,
        newsletter_id=newsletter.id,
        fallback_language=newsletter.language,
        cap=settings.digest_max_articles,
        digest_id=digest.id,
    )
    variants = composer.assign_variants(session, digest, selections)
    rows = [
        {
            "digest_id": digest.id,
            "subscriber_id": subscriber_id,
            "variant_id": variant.id if variant else None,
            "status": DeliveryStatus.QUEUED if variant else DeliveryStatus.SKIPPED,
            "last_error": None if variant else "nothing new for this reader",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for subscriber_id, variant in variants.items()
    ]
    ledger.write_deliveries(session, rows)
    previous_cursor, digest.dispatch_cursor = digest.dispatch_cursor, last_id
    # The page's queued deliveries, found by the range of subscriber ids it covered: the
    # unique (digest, subscriber) index answers this at once, and rows left by a dispatch
    # that died after writing them are picked up too.
    queued = list(
        session.scalars(
            select(Delivery.id)
            .where(
                Delivery.digest_id == digest.id,
                Delivery.subscriber_id > previous_cursor,
                Delivery.subscriber_id <= last_id,
                Delivery.status == DeliveryStatus.QUEUED,
            )
            .order_by(Delivery.id)
        )
    )
    session.flush()
    return DispatchPage(queued, done=False)


def finish_if_done(session: Session, *, digest_id: int, now: datetime | None = None) -> bool:
    """Mark a digest sent once it is fully dispatched and every delivery is final."""
    # Read afresh, not from the session's identity map: another process (the dispatcher,
    # another batch) may have moved the digest on since this session loaded it.
    row = session.execute(
        select(Digest.state, Digest.dispatched_at).where(Digest.id == digest_id)
    ).one_or_none()
    if row is None or row.state != DigestState.SENDING or row.dispatched_at is None:
        return False
    if _has_deliveries(session, digest_id, statuses=ledger.OPEN_STATUSES):
        return False
    # Nothing reached anyone and something failed for good: the send failed, not "sent".
    reached = _has_deliveries(
        session, digest_id, statuses=(DeliveryStatus.SENT, DeliveryStatus.BOUNCED)
    )
    failed = _has_deliveries(session, digest_id, statuses=(DeliveryStatus.FAILED,))
    result = session.execute(
        update(Digest)
        .where(Digest.id == digest_id, Digest.state == DigestState.SENDING)
        .values(
            state=DigestState.FAILED if failed and not reached else DigestState.SENT,
            finished_at=now or utcnow(),
        )
    )
    session.flush()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def pause(session: Session, *, digest_id: int) -> Digest:
    digest = get_digest(session, digest_id)
    if "pause" not in allowed_actions(digest.state):
        raise DigestActionError(
            f"Digest {digest_id} is {digest.state}; only a sending or "
            "scheduled digest can be paused."
        )
    digest.paused_from = digest.state
    digest.state = DigestState.PAUSED
    session.flush()
    return digest


def resume(session: Session, *, digest_id: int) -> tuple[Digest, list[list[int]]]:
    """Take a paused digest up again; the batches of deliveries still to send."""
    digest = get_digest(session, digest_id)
    if "resume" not in allowed_actions(digest.state):
        raise DigestActionError(f"Digest {digest_id} is {digest.state}, not paused.")
    was_scheduled = digest.paused_from == DigestState.SCHEDULED
    digest.state = DigestState.SCHEDULED if was_scheduled else DigestState.SENDING
    digest.paused_from = None
    session.flush()
    if was_scheduled:
        return digest, []
    return digest, queued_batches(session, digest_id=digest_id, size=500)


def cancel(session: Session, *, digest_id: int, now: datetime | None = None) -> Digest:
    """Stop a digest for good: what was not sent yet is skipped."""
    digest = get_digest(session, digest_id)
    if "cancel" not in allowed_actions(digest.state):
        raise DigestActionError(
            f"Digest {digest_id} is {digest.state}; it can no longer be cancelled."
        )
    digest.state = DigestState.CANCELLED
    digest.paused_from = None
    digest.finished_at = now or utcnow()
    ledger.skip_queued(session, digest_id=digest_id, reason="digest cancelled")
    session.flush()
    return digest


def queued_batches(session: Session, *, digest_id: int, size: int) -> list[list[int]]:
    """The digest's deliveries still queued, in batches (for resume and the sweeper)."""
    ids = list(
        session.scalars(
            select(Delivery.id)
            .where(Delivery.digest_id == digest_id, Delivery.status == DeliveryStatus.QUEUED)
            .order_by(Delivery.id)
        )
    )
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def stale_batches(
    session: Session, *, stale_after: timedelta, size: int, now: datetime | None = None
) -> list[tuple[int, list[int]]]:
    """Deliveries nobody has touched for `stale_after`, in batches to queue again.

    Their task was lost (a broker that restarted without persistence, a worker machine
    gone); queuing them again is safe, because a delivery is sent only by whoever claims
    it. Claims that old are given back first.
    """
    now = now or utcnow()
    rows = ledger.requeue_stale(
        session, stale_after_cutoff=now - stale_after, now=now, limit=size * 20
    )
    batches: dict[int, list[list[int]]] = {}
    for digest_id, delivery_id in rows:
        chunks = batches.setdefault(digest_id, [[]])
        if len(chunks[-1]) >= size:
            chunks.append([])
        chunks[-1].append(delivery_id)
    return [(digest_id, chunk) for digest_id, chunks in batches.items() for chunk in chunks]


def finish_settled(session: Session, *, now: datetime | None = None) -> list[int]:
    """Mark sent the dispatched digests whose deliveries are all final; their ids.

    A batch's last step is to finish its digest; a worker killed (or a database restart)
    between its last mark and that step would leave the digest `sending` for ever, with
    nothing stale left for the sweeper to queue again.
    """
    dispatched = session.scalars(
        select(Digest.id).where(
            Digest.state == DigestState.SENDING, Digest.dispatched_at.is_not(None)
        )
    ).all()
    return [d for d in dispatched if finish_if_done(session, digest_id=d, now=now)]


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


def _finish_empty(digest: Digest, now: datetime, why: str) -> None:
    digest.state = DigestState.EMPTY
    digest.note = why
    digest.finished_at = now
    digest.dispatched_at = digest.dispatched_at or now


def _has_deliveries(
    session: Session, digest_id: int, *, statuses: Sequence[str] | None = None
) -> bool:
    query = select(Delivery.id).where(Delivery.digest_id == digest_id)
    if statuses is not None:
        query = query.where(Delivery.status.in_(statuses))
    return session.scalar(query.limit(1)) is not None


def _count(session: Session, digest_id: int, status: str | None = None) -> int:
    query = select(func.count()).select_from(Delivery).where(Delivery.digest_id == digest_id)
    if status is not None:
        query = query.where(Delivery.status == status)
    return int(session.scalar(query) or 0)
