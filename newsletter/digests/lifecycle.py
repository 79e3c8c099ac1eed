"""The digest's state machine: created, scheduled, started, paused, resumed, cancelled, ended.

The one place that moves a digest from state to state; the dashboard, the API and the CLI
ask it what each state allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.core.clock import utcnow
from newsletter.core.models import Delivery, DeliveryStatus, Digest, DigestState
from newsletter.core.validation import InvalidInput, clean_text
from newsletter.sending import ledger
from newsletter.subscribers import newsletters as newsletter_store

# The digest's state machine: what an editor may do in each state. The dashboard shows
# exactly these buttons; the API and the CLI refuse the rest with a sentence.
ACTIONS: dict[str, frozenset[str]] = {
    DigestState.DRAFT: frozenset({"schedule", "cancel"}),
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
    until: datetime | None = None,
    local_time: str | None = None,
    local_day: date | None = None,
    draft: bool = False,
    now: datetime | None = None,
) -> Digest:
    """A digest waiting for its time (now, when no time is given); the beat tick starts it.

    A draft waits for the editor instead: nothing starts it until it is scheduled (its
    `send_at`, if given, is only proposed). A wave of a local-time send names its readers'
    wall-clock time and day, and comes with its window (since, until) already set.
    """
    now = now or utcnow()
    newsletter = newsletter_store.get_by_slug(session, newsletter_slug)
    subject = clean_text("subject", subject, max_length=300) or None
    if since is not None and since > now:
        raise InvalidInput("since", "The window cannot start in the future.")
    digest = Digest(
        newsletter_id=newsletter.id,
        state=DigestState.DRAFT if draft else DigestState.SCHEDULED,
        subject=subject,
        since=since,
        scheduled_for=send_at if draft else (send_at or now),
        schedule_key=schedule_key,
        until=until,
        local_time=local_time,
        local_day=local_day,
    )
    session.add(digest)
    session.flush()
    return digest


def get_digest(session: Session, digest_id: int) -> Digest:
    digest = session.get(Digest, digest_id)
    if digest is None:
        raise UnknownDigest(digest_id)
    return digest


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


def finish_if_done(session: Session, *, digest_id: int, now: datetime | None = None) -> bool:
    """Mark a digest sent once it is fully dispatched and every delivery is final."""
    # Read afresh, not from the session's identity map: another process (the dispatcher,
    # another batch) may have moved the digest on since this session loaded it.
    row = session.execute(
        select(Digest.state, Digest.dispatched_at, Digest.subject_test).where(
            Digest.id == digest_id
        )
    ).one_or_none()
    if row is None or row.state != DigestState.SENDING or row.dispatched_at is None:
        return False
    test = row.subject_test
    if test and test.get("winner") is None:
        return False  # a subject test's sample is out; the rest waits for its decision
    if has_deliveries(session, digest_id, statuses=ledger.OPEN_STATUSES):
        return False
    # Nothing reached anyone and something failed for good: the send failed, not "sent".
    reached = has_deliveries(
        session, digest_id, statuses=(DeliveryStatus.SENT, DeliveryStatus.BOUNCED)
    )
    failed = has_deliveries(session, digest_id, statuses=(DeliveryStatus.FAILED,))
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


def schedule(
    session: Session,
    *,
    digest_id: int,
    send_at: datetime | None = None,
    now: datetime | None = None,
) -> Digest:
    """Send a draft at `send_at` (now, when none is given): from here on it is scheduled,
    and the beat tick starts it when due, like any other."""
    digest = get_digest(session, digest_id)
    if "schedule" not in allowed_actions(digest.state):
        raise DigestActionError(
            f"Digest {digest_id} is {digest.state}; only a draft can be scheduled."
        )
    digest.state = DigestState.SCHEDULED
    digest.scheduled_for = send_at or now or utcnow()
    session.flush()
    return digest


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


def finish_empty(digest: Digest, now: datetime, why: str) -> None:
    digest.state = DigestState.EMPTY
    digest.note = why
    digest.finished_at = now
    digest.dispatched_at = digest.dispatched_at or now


def has_deliveries(
    session: Session, digest_id: int, *, statuses: Sequence[str] | None = None
) -> bool:
    query = select(Delivery.id).where(Delivery.digest_id == digest_id)
    if statuses is not None:
        query = query.where(Delivery.status.in_(statuses))
    return session.scalar(query.limit(1)) is not None


def count_deliveries(session: Session, digest_id: int, status: str | None = None) -> int:
    query = select(func.count()).select_from(Delivery).where(Delivery.digest_id == digest_id)
    if status is not None:
        query = query.where(Delivery.status == status)
    return int(session.scalar(query) or 0)
