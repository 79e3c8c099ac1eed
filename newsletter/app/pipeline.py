"""What the beat and the workers do between tasks: start, dispatch, sweep, pass mail on.

Start the digests that are due, page a started digest into batches, queue again what was
lost, hand mail our bounce addresses received to the workers. Each commits, then enqueues.
"""

from __future__ import annotations

import base64
import logging
from datetime import datetime, timedelta

from newsletter.analytics import recording
from newsletter.analytics.buffer import HitBuffer
from newsletter.app import jobs
from newsletter.app.unit_of_work import Queue, UnitOfWork, send, unit_of_work
from newsletter.core import db, metrics
from newsletter.core.config import Settings
from newsletter.digests import dispatcher, lifecycle, schedules, subject_test
from newsletter.sending import sweeper

log = logging.getLogger("newsletter.tasks")


def tick(*, queue: Queue, settings: Settings) -> list[int]:
    """The beat's heartbeat: make recurring digests that are due, start what is due, sweep."""
    with unit_of_work(queue) as work:
        schedules.plan_recurring(work.session)
        work.commit()
    with unit_of_work(queue) as work:
        started = lifecycle.start_due(work.session)
        for digest_id in started:
            work.enqueue(jobs.dispatch_digest(digest_id))
        work.commit()
    for digest_id in started:
        log.info("digest %s: starting", digest_id, extra={"digest_id": digest_id})
    decide_subject_tests(queue=queue)
    sweep(queue=queue, settings=settings)
    return started


def decide_subject_tests(*, queue: Queue, now: datetime | None = None) -> list[int]:
    """Keep the subject more readers clicked, for each subject test whose wait is over,
    and dispatch the rest of its digest with it."""
    with unit_of_work(queue) as work:
        decided = subject_test.decide_due(work.session, now=now)
        for digest_id in decided:
            work.enqueue(jobs.dispatch_digest(digest_id))
        work.commit()
    for digest_id in decided:
        log.info(
            "digest %s: subject test decided; sending the rest",
            digest_id,
            extra={"digest_id": digest_id},
        )
    return decided


def sweep(*, queue: Queue, settings: Settings) -> None:
    """Queue again what lost its task (a broker restarted empty, a machine gone)."""
    stale_after = timedelta(seconds=settings.stale_after_seconds)
    lost_after = timedelta(seconds=settings.worker_lost_seconds)
    with unit_of_work(queue) as work:
        lost, reclaimed = sweeper.lost_workers_batches(
            work.session, lost_after=lost_after, size=settings.batch_size
        )
        _queue_batches(work, reclaimed)
        work.commit()
    for instance in lost:
        log.info("worker instance %s is gone (stopped, or silent): its holdings are free", instance)
    _say_queued_again(reclaimed, "deliveries of a lost worker")
    with unit_of_work(queue) as work:
        stalled = sweeper.stalled_dispatches(work.session, stale_after=stale_after)
        batches = sweeper.stale_batches(
            work.session, stale_after=stale_after, size=settings.batch_size, lost_after=lost_after
        )
        finished = lifecycle.finish_settled(work.session)
        for digest_id in stalled:
            work.enqueue(jobs.dispatch_digest(digest_id))
        _queue_batches(work, batches)
        work.commit()
    for digest_id in finished:
        log.warning(
            "digest %s: every delivery was final but the digest was still sending; marked sent",
            digest_id,
            extra={"digest_id": digest_id},
        )
    for digest_id in stalled:
        log.warning(
            "digest %s: dispatcher stalled; starting it again",
            digest_id,
            extra={"digest_id": digest_id},
        )
    _say_queued_again(batches, "stale deliveries")


def _queue_batches(work: UnitOfWork, batches: list[tuple[int, list[int]]]) -> None:
    for digest_id, delivery_ids in batches:
        work.enqueue(jobs.send_batch(digest_id, delivery_ids))


def _say_queued_again(batches: list[tuple[int, list[int]]], what: str) -> None:
    for digest_id, delivery_ids in batches:
        log.warning(
            "digest %s: %d %s queued again",
            digest_id,
            len(delivery_ids),
            what,
            extra={"digest_id": digest_id},
        )


def dispatch_digest(*, digest_id: int, queue: Queue, settings: Settings) -> int:
    """Walk a started digest's eligible readers page by page; one batch job per page.

    Each page's deliveries are committed before its batch is queued, so the batch finds
    them; the number of batches queued is returned.
    """
    batches = 0
    while True:
        with unit_of_work(queue) as work:
            page = dispatcher.dispatch_page(work.session, digest_id=digest_id, settings=settings)
            if page.queued:
                work.enqueue(jobs.send_batch(digest_id, page.queued))
                batches += 1
            work.commit()
        if page.done:
            log.info(
                "digest %s: dispatched in %d batch(es)",
                digest_id,
                batches,
                extra={"digest_id": digest_id},
            )
            return batches


def receive_inbound(*, queue: Queue, raw: bytes | str, recipients: list[str]) -> None:
    """Hand a message our bounce addresses received to the workers (bytes or base64 text)."""
    raw_base64 = raw if isinstance(raw, str) else base64.b64encode(raw).decode("ascii")
    send(queue, jobs.process_inbound(raw_base64, recipients))


def record_link_hits(
    *, buffer: HitBuffer, settings: Settings, now: float | None = None
) -> recording.Recorded:
    """Write the clicks and opens waiting in the buffer. If the write fails, every hit
    drained goes back to the buffer: the next run counts it."""
    hits = buffer.drain()
    if not hits:
        return recording.Recorded(0, 0, 0, 0)
    try:
        with db.session_scope() as session:
            recorded, waiting = recording.record_hits(session, hits, settings=settings, now=now)
            session.commit()
    except BaseException:
        buffer.give_back(hits)
        raise
    buffer.give_back(waiting)
    for kind, (readers, machines) in recorded.by_kind.items():
        metrics.count_link_hits(kind, readers=readers, machines=machines)
    return recorded
