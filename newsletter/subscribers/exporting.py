"""The list taken out whole: every reader as the dashboard downloads them, and the
subscriptions in the very format the import reads, for a move to another installation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from newsletter.core import spreadsheets
from newsletter.core.models import SubscriberStatus, SubscriptionStatus
from newsletter.subscribers import store, suppressions
from newsletter.subscribers.importing import COLUMNS
from newsletter.subscribers.newsletters import list_newsletters

BATCH = 1000
READER_COLUMNS = (
    "email",
    "name",
    "language",
    "time_zone",
    "topics",
    "status",
    "soft_bounce_count",
    "subscriptions",
    "created_at",
)
# What a move writes: what the other side imports, and the whole picture beside it.
SUBSCRIPTIONS_FILE = "subscriptions.csv"
READERS_FILE = "readers.csv"
SUPPRESSIONS_FILE = "suppressions.csv"


def reader_rows(session: Session, *, text: str = "") -> Iterator[list[object]]:
    """Every reader whose address or name contains `text`, header first, a page at a time
    (the session is emptied between pages: a million readers never sit in memory)."""
    yield list(READER_COLUMNS)
    slugs = {n.id: n.slug for n in list_newsletters(session)}
    after = 0
    while batch := store.search_subscribers(session, text=text, limit=BATCH, after_id=after):
        for s in batch:
            yield [
                s.email,
                s.name,
                s.language,
                s.time_zone,
                ";".join(s.topics),
                s.status,
                s.soft_bounce_count,
                ";".join(f"{slugs.get(x.newsletter_id, '?')}:{x.status}" for x in s.subscriptions),
                s.created_at.isoformat(),
            ]
        after = batch[-1].id
        session.expunge_all()


def subscription_rows(session: Session) -> Iterator[list[object]]:
    """One row per live subscription (confirmed, or pending) in the import's own columns.

    Readers who left, bounced or complained are not in it: an import would refuse them
    anyway, and the suppression list travels beside it.
    """
    yield list(COLUMNS)
    slugs = {n.id: n.slug for n in list_newsletters(session)}
    live = {SubscriptionStatus.SUBSCRIBED: "true", SubscriptionStatus.PENDING: "false"}
    after = 0
    while batch := store.search_subscribers(session, limit=BATCH, after_id=after):
        for s in batch:
            if s.status != SubscriberStatus.ACTIVE:
                continue
            for x in s.subscriptions:
                if x.status in live:
                    yield [
                        s.email,
                        s.name,
                        s.language,
                        ";".join(s.topics),
                        slugs.get(x.newsletter_id, "?"),
                        live[SubscriptionStatus(x.status)],
                    ]
        after = batch[-1].id
        session.expunge_all()


@dataclass(frozen=True)
class Moved:
    subscriptions: int
    readers: int
    suppressions: int


def export_for_move(session: Session, folder: Path) -> Moved:
    """Write the three files of a move into `folder` (made if missing; it must be empty)."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = []
    for name, rows in (
        (SUBSCRIPTIONS_FILE, subscription_rows(session)),
        (READERS_FILE, reader_rows(session)),
        (SUPPRESSIONS_FILE, suppressions.export_rows(session)),
    ):
        with (folder / name).open("x", newline="", encoding="utf-8") as stream:
            writer = spreadsheets.writer(stream)
            written = -1  # the header is not a row
            for row in rows:
                writer.writerow(row)
                written += 1
        counts.append(written)
    return Moved(*counts)
