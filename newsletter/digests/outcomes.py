"""What happened to a digest, in words: its deliveries counted by outcome, and why each
skipped, failed, bounced (or waiting) delivery is so — grouped, with masked examples."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from newsletter.core.logs import mask_address, mask_addresses
from newsletter.core.models import Delivery, DeliveryStatus, DigestState, Subscriber
from newsletter.digests import lifecycle

EXAMPLES = 3
# Distinct errors read for one digest: relays quote the address, so a thousand bounces can
# be a thousand strings; the commonest are enough to say why.
MAX_ERRORS = 500
OUTCOME_NAMES: dict[str, str] = {
    DeliveryStatus.SENT: "sent",
    DeliveryStatus.BOUNCED: "bounced",
    DeliveryStatus.FAILED: "failed",
    DeliveryStatus.SKIPPED: "skipped",
    DeliveryStatus.QUEUED: "waiting",
    DeliveryStatus.SENDING: "being sent",
}
# What the sending code writes, and what it means to an editor.
KNOWN_REASONS = {
    "nothing new for this reader": "Nothing new for this reader: every story was in an earlier "
    "digest of theirs, or none matched their topics and language.",
    "no longer subscribed at send time": "Left before their turn came: unsubscribed, bounced, "
    "complained or suppressed after the digest started.",
    "digest cancelled": "The digest was cancelled before their turn.",
}
# RFC 3463 enhanced status codes an editor meets most, in words.
ENHANCED_CODES = {
    "1.1": "the mailbox does not exist",
    "1.2": "the domain does not exist or takes no mail",
    "1.10": "the address does not exist (null MX)",
    "2.1": "the mailbox is disabled",
    "2.2": "the mailbox is full",
    "3.4": "the message is too big for the receiving server",
    "4.1": "the receiving server did not answer",
    "4.4": "the receiving server could not be reached",
    "7.1": "refused by the receiving server's policy (spam or sender reputation)",
    "7.26": "refused: the message failed the receiver's authentication checks (SPF, DKIM, DMARC)",
}
_SMTP_CODE = re.compile(r"\b([245])\d\d[ -]+([245])\.(\d{1,3}\.\d{1,3})\b")
_BASIC_CODE = re.compile(r"\b([45])\d\d\b")


@dataclass(frozen=True)
class Example:
    subscriber_id: int | None
    address: str  # masked


@dataclass
class Reason:
    """One reason, the deliveries it stands for, and a few of its readers (masked)."""

    outcome: str
    words: str
    count: int
    examples: list[Example] = field(default_factory=list)
    _errors: list[str | None] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Outcomes:
    counts: dict[str, int]
    reasons: list[Reason]
    # An empty digest (nothing was sent to anyone): why.
    nothing_to_send: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "nothing_to_send": self.nothing_to_send,
            "reasons": [
                {
                    "outcome": r.outcome,
                    "reason": r.words,
                    "count": r.count,
                    "examples": [
                        {"subscriber_id": e.subscriber_id, "address": e.address} for e in r.examples
                    ],
                }
                for r in self.reasons
            ],
        }


def digest_outcomes(session: Session, digest_id: int) -> Outcomes:
    """How a digest's deliveries ended, and why for every one that was not sent (grouped
    in SQL by status and error; a few examples per reason)."""
    digest = lifecycle.get_digest(session, digest_id)
    counts = {
        OUTCOME_NAMES.get(status, status): int(count)
        for status, count in session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.digest_id == digest_id)
            .group_by(Delivery.status)
        )
    }
    rows = session.execute(
        select(Delivery.status, Delivery.last_error, func.count().label("n"))
        .where(
            Delivery.digest_id == digest_id,
            Delivery.status.in_(
                [DeliveryStatus.SKIPPED, DeliveryStatus.FAILED, DeliveryStatus.BOUNCED]
            )
            | (Delivery.status.in_([DeliveryStatus.QUEUED]) & Delivery.last_error.is_not(None)),
        )
        .group_by(Delivery.status, Delivery.last_error)
        .order_by(func.count().desc())
        .limit(MAX_ERRORS)
    ).all()
    grouped: dict[tuple[str, str], Reason] = {}
    for status, error, count in rows:
        outcome = OUTCOME_NAMES.get(status, status)
        words = reason_in_words(status, error)
        reason = grouped.setdefault((outcome, words), Reason(outcome, words, 0))
        reason.count += int(count)
        reason._errors.append(error)
    reasons = sorted(grouped.values(), key=lambda r: (-r.count, r.outcome, r.words))
    for reason in reasons:
        reason.examples = _examples(session, digest_id, reason)
    nothing = digest.note or None if digest.state == DigestState.EMPTY else None
    return Outcomes(counts, reasons, nothing)


def reason_in_words(status: str, error: str | None) -> str:
    """A delivery's error as an editor reads it: what it means, with the code it came with."""
    if not error:
        if status == DeliveryStatus.BOUNCED:
            return "Bounced: the receiving server sent the message back later."
        return "No reason was recorded."
    known = KNOWN_REASONS.get(error.strip())
    if known:
        return known
    said = _smtp_in_words(error)
    if status == DeliveryStatus.QUEUED:
        return f"Waiting to be tried again: {said[:1].lower()}{said[1:]}"
    return said


def _smtp_in_words(error: str) -> str:
    code = _SMTP_CODE.search(error)
    if code:
        klass, detail = code.group(2), code.group(3)
        meaning = ENHANCED_CODES.get(detail)
        enhanced = f"{klass}.{detail}"
        if meaning:
            return f"{meaning[:1].upper()}{meaning[1:]} ({enhanced})."
        return f"{'Refused for good' if klass == '5' else 'Put off'} ({enhanced})."
    basic = _BASIC_CODE.search(error)
    if basic and basic.group(1) == "5":
        return "Refused for good by the receiving server."
    if basic:
        return "Put off by the receiving server (a temporary refusal)."
    # Our own words (a relay out of reach, a timeout): shown as they are, addresses masked.
    text = mask_addresses(error.strip().splitlines()[0])[:160]
    return f"{text[:1].upper()}{text[1:]}"


def reader_deliveries(
    session: Session, *, subscriber_id: int, limit: int = 20
) -> list[dict[str, Any]]:
    """A reader's latest deliveries, each with its outcome and, when not sent, why: how an
    editor traces one reader from a digest's examples."""
    rows = session.execute(
        select(Delivery.digest_id, Delivery.status, Delivery.last_error, Delivery.updated_at)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "digest_id": digest_id,
            "outcome": OUTCOME_NAMES.get(status, status),
            "why": "" if status == DeliveryStatus.SENT else reason_in_words(status, error),
            "at": at.isoformat() if at else None,
        }
        for digest_id, status, error, at in rows
        if status != DeliveryStatus.QUEUED or error
    ]


def _examples(session: Session, digest_id: int, reason: Reason) -> list[Example]:
    statuses = [s for s, name in OUTCOME_NAMES.items() if name == reason.outcome]
    errors = [e for e in reason._errors if e is not None]
    condition: ColumnElement[bool] = (
        Delivery.last_error.in_(errors) if errors else Delivery.last_error.is_(None)
    )
    if errors and None in reason._errors:
        condition = condition | Delivery.last_error.is_(None)
    rows = session.execute(
        select(Delivery.subscriber_id, Subscriber.email)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.digest_id == digest_id, Delivery.status.in_(statuses), condition)
        .order_by(Delivery.id)
        .limit(EXAMPLES)
    ).all()
    return [
        Example(subscriber_id, mask_address(email) if email else "(erased)")
        for subscriber_id, email in rows
    ]
