"""The suppression list: addresses never mailed, whatever they sign up for."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from newsletter.core import spreadsheets
from newsletter.core.clock import utcnow
from newsletter.core.models import Subscriber, Suppression
from newsletter.core.validation import InvalidInput, clean_email, clean_text, email_hash


@dataclass
class SuppressionImport:
    added: int = 0
    known: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)


def add(session: Session, *, email: str, reason: str = "manual", detail: str = "") -> bool:
    """Suppress an address; False when it was suppressed already."""
    address, key = clean_email(email)
    if is_listed(session, key):
        return False
    suppress(
        session,
        email_key=key,
        email=address,
        reason=clean_text("reason", reason, max_length=32) or "manual",
        detail=clean_text("detail", detail, max_length=1000),
    )
    return True


def remove(session: Session, *, email: str) -> bool:
    """Take an address off the list (it is not subscribed again by this)."""
    _, key = clean_email(email)
    result = session.execute(delete(Suppression).where(Suppression.email_hash == email_hash(key)))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def is_listed(session: Session, email_key: str) -> bool:
    """Whether this (lower-cased) address is on the list."""
    digest = email_hash(email_key)
    return (
        session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is not None
    )


def listed_keys(session: Session, email_keys: Iterable[str]) -> set[str]:
    """Which of these (lower-cased) addresses are on the list, in one query."""
    by_hash = {email_hash(key): key for key in email_keys}
    if not by_hash:
        return set()
    found = session.scalars(
        select(Suppression.email_hash).where(Suppression.email_hash.in_(list(by_hash)))
    )
    return {by_hash[digest] for digest in found}


def suppress(
    session: Session,
    *,
    email_key: str,
    email: str | None,
    reason: str,
    detail: str = "",
    now: datetime | None = None,
) -> Suppression:
    """Put an address on the suppression list (idempotent); email=None keeps only the hash."""
    digest = email_hash(email_key)
    suppression = session.scalar(select(Suppression).where(Suppression.email_hash == digest))
    if suppression is None:
        suppression = Suppression(
            email_hash=digest, email=email, reason=reason, detail=detail, created_at=now or utcnow()
        )
        session.add(suppression)
    else:
        suppression.email = email if email is not None else None
    session.flush()
    return suppression


@dataclass(frozen=True)
class Rekeyed:
    """What `rekey` did: hashes recomputed, and erased entries it could not recompute."""

    subscribers: int
    suppressions: int
    erased: int


def rekey(session: Session, *, batch: int = 1000) -> Rekeyed:
    """Recompute every keyed hash whose address is known, under the current secret key.

    After NEWSLETTER_SECRET_KEY changed, the hashes made under the old key match nothing:
    a suppressed address would be mailed again. The subscribers' and the suppressed
    addresses' hashes are made again from their addresses; an erased reader's entry
    kept only its hash, which no key change can carry over (that is the point of it).
    """
    counts = {"subscribers": 0, "suppressions": 0}
    for model, address, name in (
        (Subscriber, Subscriber.email_key, "subscribers"),
        (Suppression, Suppression.email, "suppressions"),
    ):
        after = 0
        while rows := session.execute(
            select(model.id, address)
            .where(model.id > after, address.is_not(None))
            .order_by(model.id)
            .limit(batch)
        ).all():
            session.execute(
                update(model),
                [{"id": id_, "email_hash": email_hash(str(value).lower())} for id_, value in rows],
            )
            counts[name] += len(rows)
            after = rows[-1][0]
    erased = session.scalar(
        select(func.count()).select_from(Suppression).where(Suppression.email.is_(None))
    )
    return Rekeyed(counts["subscribers"], counts["suppressions"], int(erased or 0))


def entries(session: Session, *, batch: int = 1000) -> Iterator[Suppression]:
    """Every entry, oldest first, read a page at a time."""
    after = 0
    while True:
        page = list(
            session.scalars(
                select(Suppression)
                .where(Suppression.id > after)
                .order_by(Suppression.id)
                .limit(batch)
            )
        )
        yield from page
        if len(page) < batch:
            return
        after = page[-1].id


def page(session: Session, *, limit: int = 50, offset: int = 0) -> list[Suppression]:
    """One page of the list, newest first."""
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must not be negative, got {limit} and {offset}")
    return list(
        session.scalars(
            select(Suppression).order_by(Suppression.id.desc()).limit(limit).offset(offset)
        )
    )


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Suppression)) or 0)


def import_csv(session: Session, stream: TextIO) -> SuppressionImport:
    """A CSV with an `email` column (and optionally `reason`): each address suppressed."""
    reader = csv.DictReader(stream)
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if "email" not in columns:
        raise InvalidInput("file", "The CSV file needs an 'email' column in its first row.")
    reader.fieldnames = columns
    report = SuppressionImport()
    for row in reader:
        line = reader.line_num
        # Cells as the export wrote them: its neutralising quotes come off (spreadsheets).
        email = spreadsheets.read_cell(row.get("email") or "")
        reason = spreadsheets.read_cell(row.get("reason") or "")
        try:
            if add(session, email=email, reason=reason or "import"):
                report.added += 1
            else:
                report.known += 1
        except InvalidInput as exc:
            report.refused.append((line, exc.message))
    return report


def export_csv(session: Session, stream: TextIO) -> int:
    """Write the list as CSV: email (empty for erased readers: only a hash is kept).

    Every cell is spreadsheet-safe: a bounce's diagnostic is text from outside.
    """
    writer = spreadsheets.writer(stream)
    written = -1  # the header row is not an entry
    for row in export_rows(session):
        writer.writerow(row)
        written += 1
    return written


def export_rows(session: Session) -> Iterator[list[str]]:
    """The rows export_csv writes, header first, read a page at a time."""
    yield ["email", "email_hash", "reason", "detail", "created_at"]
    for entry in entries(session):
        yield [
            entry.email or "",
            entry.email_hash,
            entry.reason,
            entry.detail,
            entry.created_at.isoformat(),
        ]
