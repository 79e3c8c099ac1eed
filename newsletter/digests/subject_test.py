"""A subject test: two subjects to a sample of the readers, then the one that drew more
readers' clicks (machines' never count) to everyone else.

The sample is a share of the digest's readers (10% by default), each given one of the two
subjects; both halves get the same stories. Once the sample is dispatched the digest waits
(4 hours by default); the beat then counts each subject's unique reader clicks, keeps the
winner (the first subject on a tie), and dispatches the rest with it. The editor may pick
by hand instead, at any time during the wait.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.analytics import reports
from newsletter.core.clock import utcnow
from newsletter.core.models import Digest, DigestState
from newsletter.core.validation import InvalidInput, clean_text
from newsletter.digests import lifecycle, shaping

DEFAULT_SAMPLE_PERCENT = 10
DEFAULT_WAIT_MINUTES = 240
MAX_SUBJECT_LENGTH = 300
# How the decision was made, in the report's words.
BY_CLICKS = "more readers clicked"
BY_TIE = "a tie: the first subject"
BY_EDITOR = "picked by the editor"
BY_NO_SAMPLE = "no reader fell in the sample: the first subject"


class Phase:
    NONE = "none"  # no test
    SAMPLE = "sample"  # the sample is being dispatched
    WAITING = "waiting"  # the sample is out; clicks are being counted
    DECIDED = "decided"  # the rest go (or went) with the winner


def phase(digest: Digest) -> str:
    test = digest.subject_test
    if not test:
        return Phase.NONE
    if test.get("winner") is not None:
        return Phase.DECIDED
    return Phase.WAITING if test.get("sample_sent_at") else Phase.SAMPLE


def plan(
    subjects: Sequence[str] | None,
    *,
    sample_percent: int | None = None,
    wait_minutes: int | None = None,
    tracking: bool,
) -> dict[str, Any] | None:
    """A test as an editor asks for it, checked; None (no subjects) takes a test away.
    InvalidInput in words for what cannot be tested."""
    if not subjects:
        return None
    if not tracking:
        raise InvalidInput(
            "subject_test",
            "A subject test keeps the subject more readers clicked, and clicks are not counted "
            "here: turn on NEWSLETTER_TRACK_CLICKS first.",
        )
    cleaned = [
        clean_text("subject_test", s, max_length=MAX_SUBJECT_LENGTH).strip() for s in subjects
    ]
    if len(cleaned) != 2 or not all(cleaned) or cleaned[0] == cleaned[1]:
        raise InvalidInput("subject_test", "A subject test takes two different subjects.")
    percent = DEFAULT_SAMPLE_PERCENT if sample_percent is None else sample_percent
    if not 2 <= percent <= 50:
        raise InvalidInput(
            "subject_test", "The sample is from 2% to 50% of the readers (10% by default)."
        )
    wait = DEFAULT_WAIT_MINUTES if wait_minutes is None else wait_minutes
    if not 5 <= wait <= 2 * 24 * 60:
        raise InvalidInput(
            "subject_test", "The wait is from 5 minutes to 2 days (4 hours by default)."
        )
    return {"subjects": cleaned, "sample_percent": percent, "wait_minutes": wait}


def set_test(session: Session, *, digest_id: int, test: dict[str, Any] | None) -> Digest:
    """Give a digest not yet started a subject test (a plan()), or take it away (None)."""
    digest = lifecycle.get_digest(session, digest_id)
    if not shaping.editable(digest):
        raise lifecycle.DigestActionError(
            f"Digest {digest_id} is {digest.state}; a subject test is set before it starts."
        )
    if test is not None and digest.local_day is not None:
        raise InvalidInput(
            "subject_test", "A digest sent in waves on each reader's clock takes no subject test."
        )
    digest.subject_test = test
    return digest


def arm_of(digest: Digest, subscriber_id: int) -> int | None:
    """The subject (0, 1) a reader gets in the sample, or None when not in it: a hash of
    the digest and the reader, so a dispatch done again puts each reader where it was."""
    test = digest.subject_test or {}
    draw = int.from_bytes(
        hashlib.blake2b(f"{digest.id}:{subscriber_id}".encode(), digest_size=8).digest(), "big"
    )
    if draw % 10_000 >= int(test.get("sample_percent", 0)) * 100:
        return None
    return (draw // 10_000) % 2


def sample_dispatched(digest: Digest, now: datetime) -> None:
    """The sample is out: the wait begins."""
    digest.subject_test = {**(digest.subject_test or {}), "sample_sent_at": now.isoformat()}


def decide(
    session: Session,
    digest: Digest,
    *,
    now: datetime | None = None,
    pick: int | None = None,
    by: str | None = None,
) -> int:
    """Keep a subject (the editor's `pick`, else the one more readers clicked) and set the
    digest to dispatch its rest with it. The caller commits, then queues the dispatch."""
    test = dict(digest.subject_test or {})
    clicked = reports.arm_readers(session, digest_id=digest.id)
    readers = [clicked.get(0, 0), clicked.get(1, 0)]
    if pick is not None:
        winner, by = pick, by or BY_EDITOR
    else:
        winner = 1 if readers[1] > readers[0] else 0
        by = by or (BY_TIE if readers[0] == readers[1] else BY_CLICKS)
    test.update(
        winner=winner, decided_by=by, decided_at=(now or utcnow()).isoformat(), readers=readers
    )
    digest.subject_test = test
    # The rest: dispatched from the first reader again, skipping those who had the sample.
    digest.dispatched_at = None
    digest.dispatch_cursor = 0
    return winner


def pick(session: Session, *, digest_id: int, subject: int, now: datetime | None = None) -> Digest:
    """The editor keeps subject 0 or 1 without waiting for the clicks."""
    digest = lifecycle.get_digest(session, digest_id)
    if phase(digest) != Phase.WAITING or digest.state != DigestState.SENDING:
        raise lifecycle.DigestActionError(
            f"Digest {digest_id} has no subject test waiting for a decision."
        )
    if subject not in (0, 1):
        raise InvalidInput("subject", "Pick the first subject (0) or the second (1).")
    decide(session, digest, now=now, pick=subject)
    return digest


def decide_due(session: Session, *, now: datetime | None = None) -> list[int]:
    """Decide the tests whose wait is over; the digests whose rest must now be dispatched."""
    now = now or utcnow()
    due = []
    for digest in session.scalars(select(Digest).where(Digest.state == DigestState.SENDING)):
        if phase(digest) != Phase.WAITING:
            continue
        test = digest.subject_test or {}
        sent = datetime.fromisoformat(test["sample_sent_at"])
        if now >= sent + timedelta(minutes=int(test["wait_minutes"])):
            decide(session, digest, now=now)
            due.append(digest.id)
    return due


def decision_due_at(digest: Digest) -> datetime | None:
    """When the beat decides a waiting test."""
    test = digest.subject_test or {}
    if phase(digest) != Phase.WAITING:
        return None
    return datetime.fromisoformat(test["sample_sent_at"]) + timedelta(
        minutes=int(test["wait_minutes"])
    )
