"""The dispatcher: a started digest's readers, page by page, into deliveries and batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.clock import utcnow
from newsletter.core.config import Settings
from newsletter.core.models import Delivery, DeliveryStatus, DigestState
from newsletter.digests import composer, lifecycle, subject_test, waves
from newsletter.sending import ledger

log = logging.getLogger("newsletter.dispatch")


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
    digest = lifecycle.get_digest(session, digest_id)
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
    candidates = composer.candidate_articles(
        session,
        since=digest.since,  # type: ignore[arg-type]
        until=digest.until,
        shaping=composer.Shaping.of(digest),
    )
    if not candidates:
        lifecycle.finish_empty(
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
    testing = subject_test.phase(digest)
    if last_id is None:
        if testing == subject_test.Phase.SAMPLE:
            sampled = lifecycle.count_deliveries(session, digest.id)
            if sampled == lifecycle.count_deliveries(session, digest.id, DeliveryStatus.SKIPPED):
                # No sample reached anyone (too few readers, or nothing new for those
                # drawn): no clicks to wait for; the rest get the first subject.
                subject_test.decide(session, digest, now=now, by=subject_test.BY_NO_SAMPLE)
                session.flush()
                return DispatchPage([], done=False)
            subject_test.sample_dispatched(digest, now)
        digest.dispatched_at = now
        if not lifecycle.has_deliveries(session, digest.id):
            lifecycle.finish_empty(
                digest,
                now,
                f"No reader's clock read {digest.local_time} at this wave's time, or each "
                "had this day's digest already."
                if digest.local_day
                else "Nobody is subscribed to this newsletter yet.",
            )
        elif lifecycle.count_deliveries(
            session, digest.id, DeliveryStatus.SKIPPED
        ) == lifecycle.count_deliveries(session, digest.id):
            lifecycle.finish_empty(
                digest,
                now,
                f"None of the {len(candidates)} article(s) matched any reader's topics "
                "and language, or every reader had them already.",
            )
        session.flush()
        lifecycle.finish_if_done(session, digest_id=digest.id, now=now)
        return DispatchPage([], done=True)
    if digest.local_day is not None:
        # A wave: only the readers whose clock reads its time now, once a day each. The
        # cursor still moves over the whole page, so the walk stays keyset-paged.
        mine = waves.wave_readers(session, digest, [r.subscriber_id for r in readers])
        readers = [r for r in readers if r.subscriber_id in mine]
    arms: dict[int, int | None] = {}
    if testing == subject_test.Phase.SAMPLE:
        # A subject test's sample first: the others wait for its decision.
        arms = {r.subscriber_id: subject_test.arm_of(digest, r.subscriber_id) for r in readers}
        readers = [r for r in readers if arms[r.subscriber_id] is not None]
    variants = composer.compose(
        session,
        digest,
        readers,
        candidates,
        cap=settings.digest_max_articles,
    )
    rows = [
        {
            "digest_id": digest.id,
            "subscriber_id": subscriber_id,
            "variant_id": variant.id if variant else None,
            "status": DeliveryStatus.QUEUED if variant else DeliveryStatus.SKIPPED,
            "last_error": None if variant else "nothing new for this reader",
            "arm": arms.get(subscriber_id),
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
                # The rest after a subject test: not the sample's own, sent already.
                *([Delivery.arm.is_(None)] if testing == subject_test.Phase.DECIDED else []),
            )
            .order_by(Delivery.id)
        )
    )
    session.flush()
    return DispatchPage(queued, done=False)
