"""What an editor (or an operator) does: digests and readers managed by hand.

Digests sent, scheduled, paused, resumed and cancelled; readers added, imported from a CSV
file and erased on request. As everywhere in app/, the work is committed first, and only
then are its jobs queued: the tick that starts a digest due now, a resumed digest's
batches, confirmation emails.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from newsletter.app import jobs, readers
from newsletter.app.unit_of_work import UnitOfWork
from newsletter.core.config import Settings
from newsletter.core.models import Digest, TestSend, TestSendStatus
from newsletter.digests import lifecycle, schedules, shaping, subject_test, trial
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.importing import ImportReport, import_subscribers_csv
from newsletter.subscribers.store import SignupForm, SignupOutcome

# --- digests -----------------------------------------------------------------------------


def create_digest(
    work: UnitOfWork,
    *,
    newsletter_slug: str,
    since: datetime | None = None,
    send_at: datetime | None = None,
    subject: str | None = None,
    draft: bool = False,
    shape: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Digest:
    """A digest to send now, or at send_at (UTC); one due now starts without waiting for
    the next beat. A draft waits for schedule_digest. `shape`: the editor's note,
    subjects, pinned and excluded stories (see shaping.edit). UnknownNewsletter or
    InvalidInput change nothing."""
    try:
        digest = lifecycle.create_digest(
            work.session,
            newsletter_slug=newsletter_slug,
            since=since,
            send_at=send_at,
            subject=subject,
            draft=draft,
            now=now,
        )
        if shape:
            shaping.edit(work.session, digest_id=digest.id, **shape)
    except Exception:
        work.rollback()
        raise
    if not draft:
        work.enqueue(jobs.tick())
    work.commit()
    return digest


def schedule_digest(work: UnitOfWork, *, digest_id: int, send_at: datetime | None = None) -> Digest:
    """Send a draft at send_at (UTC), or now: one due now starts without waiting for the
    next beat. DigestActionError (not a draft) changes nothing."""
    digest = lifecycle.schedule(work.session, digest_id=digest_id, send_at=send_at)
    work.enqueue(jobs.tick())
    work.commit()
    return digest


def send_at_local_time(
    work: UnitOfWork,
    *,
    newsletter_slug: str,
    local_time: str,
    since: datetime | None = None,
    subject: str | None = None,
    now: datetime | None = None,
) -> list[Digest]:
    """A one-off digest at the next `local_time` on each reader's clock: one per wave.
    UnknownNewsletter or InvalidInput change nothing."""
    made = schedules.plan_local_time_send(
        work.session,
        newsletter_slug=newsletter_slug,
        local_time=local_time,
        since=since,
        subject=subject,
        now=now,
    )
    work.enqueue(jobs.tick())
    work.commit()
    return made


def edit_digest(work: UnitOfWork, *, digest_id: int, **changes: Any) -> Digest:
    """Shape a digest not yet started: its note and subjects per language, the stories
    pinned (in order) or left out (see shaping.edit). A refusal changes nothing."""
    try:
        digest = shaping.edit(work.session, digest_id=digest_id, **changes)
    except Exception:
        work.rollback()
        raise
    work.commit()
    return digest


def set_subject_test(
    work: UnitOfWork,
    *,
    digest_id: int,
    subjects: Sequence[str] | None,
    sample_percent: int | None = None,
    wait_minutes: int | None = None,
    settings: Settings,
) -> Digest:
    """Two subjects to try on a sample before the rest go (no subjects: no test)."""
    try:
        planned = subject_test.plan(
            subjects,
            sample_percent=sample_percent,
            wait_minutes=wait_minutes,
            tracking=settings.track_clicks,
        )
        digest = subject_test.set_test(work.session, digest_id=digest_id, test=planned)
    except Exception:
        work.rollback()
        raise
    work.commit()
    return digest


def pick_subject(work: UnitOfWork, *, digest_id: int, subject: int) -> Digest:
    """The editor decides a subject test without waiting: the rest go with `subject`."""
    try:
        digest = subject_test.pick(work.session, digest_id=digest_id, subject=subject)
    except Exception:
        work.rollback()
        raise
    work.enqueue(jobs.dispatch_digest(digest_id))
    work.commit()
    return digest


def test_send(
    work: UnitOfWork,
    *,
    to: Sequence[str],
    settings: Settings,
    digest_id: int | None = None,
    newsletter_slug: str | None = None,
    language: str | None = None,
    as_reader: str | None = None,
) -> TestSend:
    """A test send of a digest as it stands (or of a newsletter's next one), recorded, then
    handed to a worker; a refusal (InvalidInput, NothingToSend, an unknown digest,
    newsletter or reader) records nothing."""
    try:
        test = trial.request_test_send(
            work.session,
            to=to,
            settings=settings,
            digest_id=digest_id,
            newsletter_slug=newsletter_slug,
            language=language,
            as_reader=as_reader,
        )
    except Exception:
        work.rollback()
        raise
    if test.status == TestSendStatus.QUEUED:
        work.enqueue(jobs.send_test(test.id))
    work.commit()
    return test


def pause_digest(work: UnitOfWork, *, digest_id: int) -> Digest:
    """Hold a digest (sending or scheduled): no more of it goes out until it is resumed."""
    digest = lifecycle.pause(work.session, digest_id=digest_id)
    work.commit()
    return digest


def resume_digest(work: UnitOfWork, *, digest_id: int) -> Digest:
    """Take a paused digest up again: its deliveries still queued go to the workers again,
    and one that was paused before it started starts when due (now, if it is)."""
    digest, batches = lifecycle.resume(work.session, digest_id=digest_id)
    for batch in batches:
        work.enqueue(jobs.send_batch(digest_id, batch))
    work.enqueue(jobs.tick())
    work.commit()
    return digest


def cancel_digest(work: UnitOfWork, *, digest_id: int) -> Digest:
    """Stop a digest for good: what was not sent yet is skipped."""
    digest = lifecycle.cancel(work.session, digest_id=digest_id)
    work.commit()
    return digest


# --- readers, on their behalf ------------------------------------------------------------


def add_subscriber(
    work: UnitOfWork,
    *,
    form: SignupForm,
    confirmed: bool,
    settings: Settings,
    welcome: bool = False,
) -> SignupOutcome:
    """Add a reader by hand: sent the confirmation email, or, with `confirmed` (consent
    given elsewhere), subscribed at once; sent the welcome only with `welcome`."""
    return readers.subscribe(
        work,
        form=form,
        source="cli",
        settings=settings,
        confirmed=confirmed,
        welcome=readers.welcomes_confirmed(asked=welcome),
    )


def import_subscribers(
    work: UnitOfWork,
    *,
    stream: TextIO,
    settings: Settings,
    dry_run: bool = False,
    send_confirmations: bool = False,
    welcome: bool = False,
) -> ImportReport:
    """Import readers from a CSV stream (see import_subscribers_csv); a dry run changes
    nothing. With send_confirmations, the rows left pending are sent the confirmation.

    InvalidInput (a file that cannot be read as our CSV) changes nothing.
    """
    try:
        report = import_subscribers_csv(
            work.session,
            stream,
            default_language=settings.default_language,
            default_time_zone=settings.default_time_zone,
            dry_run=dry_run,
        )
    except Exception:
        work.rollback()
        raise
    if send_confirmations and not dry_run:
        for subscriber_id in report.pending_subscriber_ids:
            work.enqueue(jobs.send_confirmation(subscriber_id))
    if readers.welcomes_confirmed(asked=welcome) and not dry_run:
        for subscriber_id, newsletter_ids in report.confirmed_newsletters.items():
            work.enqueue(jobs.send_welcome(subscriber_id, newsletter_ids))
    work.commit()
    return report


def erase_subscriber(work: UnitOfWork, *, email: str) -> None:
    """Erase a reader on request (UnknownSubscriber when there is none)."""
    subscriber = subscribers.find_by_email(work.session, email)
    readers.erase(work, subscriber_id=subscriber.id)
