"""The suppression list: addresses never mailed, whatever they sign up for."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from newsletter.core.models import Suppression
from newsletter.core.validation import InvalidInput, clean_email, clean_text
from newsletter.subscribers.store import email_hash, suppress


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
    digest = email_hash(email_key)
    return (
        session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is not None
    )


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
        try:
            if add(session, email=row.get("email") or "", reason=row.get("reason") or "import"):
                report.added += 1
            else:
                report.known += 1
        except InvalidInput as exc:
            report.refused.append((line, exc.message))
    return report


def export_csv(session: Session, stream: TextIO) -> int:
    """Write the list as CSV: email (empty for erased readers: only a hash is kept)."""
    writer = csv.writer(stream)
    written = -1  # the header row is not an entry
    for row in export_rows(session):
        writer.writerow(row)
        written += 1
    return written


def export_rows(session: Session) -> Iterator[list[str]]:
    """The rows export_csv writes, header first, read a page at a time."""
    yield ["email", "email_sha256", "reason", "detail", "created_at"]
    for entry in entries(session):
        yield [
            entry.email or "",
            entry.email_hash,
            entry.reason,
            entry.detail,
            entry.created_at.isoformat(),
        ]
