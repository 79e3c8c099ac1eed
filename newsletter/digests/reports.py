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
    DigestState,
)
from newsletter.digests import lifecycle, render, subject_test


def digest_status(
    session: Session, digest_id: int, *, with_subjects: bool = True
) -> dict[str, Any]:
    """What editors see: state, times, and how many deliveries stand where; and the
    subjects it went out with, unless `with_subjects` is off (a progress bar polling each
    second has no use for them)."""
    digest = lifecycle.get_digest(session, digest_id)
    subjects = render.variant_subjects(session, [digest]) if with_subjects else {}
    return _status(
        digest,
        _counts_by_digest(session, [digest_id]).get(digest_id, {}),
        subjects.get(digest_id, []),
    )


def list_digests(
    session: Session, *, limit: int, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """A page of digests, newest first, each as `digest_status` gives it; and how many in all."""
    total = int(session.scalar(select(func.count()).select_from(Digest)) or 0)
    found = list(
        session.scalars(select(Digest).order_by(Digest.id.desc()).limit(limit).offset(offset))
    )
    counts = _counts_by_digest(session, [digest.id for digest in found])
    subjects = render.variant_subjects(session, found)
    return [
        _status(digest, counts.get(digest.id, {}), subjects.get(digest.id, [])) for digest in found
    ], total


def banner(
    state: str,
    *,
    scheduled_for_local: str | None = None,
    note: str | None = None,
    subject_test: str | None = None,
) -> str:
    """What a digest in this state is doing, in a sentence: the one wording the list, the
    digest's page and its live progress all show, so a badge and a banner never disagree.
    `subject_test` is the phase of its subject test, if it has one."""
    if state == DigestState.SENDING and subject_test in TEST_SENTENCES:
        return TEST_SENTENCES[subject_test]
    if state == DigestState.DRAFT:
        return "Draft: it reaches nobody until you send it now or schedule it."
    if state == DigestState.SCHEDULED:
        return f"Scheduled for {scheduled_for_local}." if scheduled_for_local else "Scheduled."
    if state == DigestState.EMPTY:
        return f"Nothing to send: {note}" if note else "Nothing to send."
    return STATE_SENTENCES.get(state, state)


TEST_SENTENCES: dict[str, str] = {
    subject_test.Phase.SAMPLE: "Subject test: sending both subjects to the sample.",
    subject_test.Phase.WAITING: (
        "Subject test: the sample is out; the rest wait for the subject more readers click."
    ),
}
STATE_SENTENCES: dict[str, str] = {
    DigestState.SENDING: "Being sent now.",
    DigestState.PAUSED: "Paused: nothing more is sent until it is resumed.",
    DigestState.SENT: "Sent.",
    DigestState.CANCELLED: "Cancelled: nothing more of it will be sent.",
    DigestState.FAILED: "Failed: see the delivery errors below.",
}


def progress(counts: dict[str, int], *, state: str, note: str | None = None) -> dict[str, Any]:
    """A progress bar's widths (percent of all deliveries) and the same in words; a digest
    with no deliveries says why there are none instead of "0%"."""
    total = counts["total"]
    done = total - counts["queued"]

    def share(n: int) -> float:
        return round(100.0 * n / total, 2) if total else 0.0

    if total:
        words = (
            f"{counts['sent']:,} of {total:,} sent · {counts['bounced']:,} bounced · "
            f"{counts['failed']:,} failed"
        )
        if counts["skipped"]:
            words += f" · {counts['skipped']:,} skipped"
    elif state == DigestState.EMPTY:
        words = banner(state, note=note)
    elif state in (DigestState.DRAFT, DigestState.SCHEDULED, DigestState.PAUSED):
        words = "not started"
    elif state == DigestState.SENDING:
        words = "finding its readers"
    else:
        words = "no deliveries"
    return {
        "sent": share(counts["sent"]),
        "bounced": share(counts["bounced"]),
        "failed": share(counts["failed"]),
        "skipped": share(counts["skipped"]),
        "done": int(100 * done // total) if total else 0,
        # No percentage for a bar that has nothing to count: "0%" reads as "stuck".
        "percent": f"{int(100 * done // total)}%" if total else "",
        "text": words,
    }


def _status(digest: Digest, by_status: dict[str, int], sent_subjects: list[str]) -> dict[str, Any]:
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
        # The editor's subject per language, and the subjects its variants went out with
        # (their lead stories' titles when the editor gave none).
        "subjects": dict(digest.subjects or {}),
        "sent_subjects": sent_subjects,
        "intro": dict(digest.intro or {}),
        "pinned": list(digest.pinned or ()),
        "excluded": list(digest.excluded or ()),
        # Two subjects tried on a sample (digests/subject_test.py), and where the test is.
        "subject_test": (
            {**digest.subject_test, "phase": subject_test.phase(digest)}
            if digest.subject_test
            else None
        ),
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
