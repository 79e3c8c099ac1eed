"""Subscriber import from a CSV file: many readers at once, in bulk, never overruling a reader."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from newsletter.core import spreadsheets
from newsletter.core.clock import utcnow
from newsletter.core.models import (
    EventKind,
    Newsletter,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from newsletter.core.validation import (
    InvalidInput,
    clean_email,
    clean_language,
    clean_slugs,
    clean_text,
    clean_topics,
)
from newsletter.subscribers.newsletters import DEFAULT_SLUG, UnknownNewsletter
from newsletter.subscribers.suppressions import listed_keys

if TYPE_CHECKING:
    from _csv import Reader as CSVReader

COLUMNS = ("email", "name", "language", "topics", "newsletter", "confirmed")
# The dashboard's export has these too: a file exported from it imports as it is, and
# they are read as nothing (a reader's own settings are never overruled by a list).
EXPORTED_ONLY = ("time_zone", "status", "soft_bounce_count", "subscriptions", "created_at")
SOURCE = "import"
DEFAULT_CHUNK_SIZE = 5000
# SQLite allows 32766 bound parameters per statement; a chunk's IN (...) lists stay below it.
MAX_CHUNK_SIZE = 30000
_YES = frozenset({"true", "yes", "1"})
_NO = frozenset({"false", "no", "0", ""})
_SHOWN_LENGTH = 60


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do), row by row where rows were refused."""

    added: int = 0
    # Known addresses whose profile or subscription this import changed.
    updated: int = 0
    unchanged: int = 0
    # (line number in the file, reason in plain words), in the order of the file.
    refused: list[tuple[int, str]] = field(default_factory=list)
    # Subscribers given a pending subscription by this import, who could be asked to
    # confirm it; always empty in a dry run, whose ids were never kept.
    pending_subscriber_ids: list[int] = field(default_factory=list)
    # Subscribers this import subscribed (confirmed), and to which newsletters: whom a
    # welcome would go to, when the editor asks for one. Empty in a dry run.
    confirmed_newsletters: dict[int, list[int]] = field(default_factory=dict)
    # How many subscribers were (or, in a dry run, would be) left pending.
    pending: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "refused": [{"line": line, "reason": reason} for line, reason in self.refused],
            "pending": self.pending,
            "pending_subscriber_ids": list(self.pending_subscriber_ids),
            "dry_run": self.dry_run,
        }


def import_subscribers_csv(
    session: Session,
    stream: TextIO,
    *,
    default_language: str,
    default_time_zone: str,
    dry_run: bool = False,
    now: datetime | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ImportReport:
    """Add or update the readers listed in a CSV file, refusing bad rows one by one.

    The first row names the columns: `email` (required), `name`, `language`, `topics`
    (separated by commas or semicolons), `newsletter` (a slug, `daily` when empty) and
    `confirmed` (true/false, yes/no, 1/0). A column we do not know, or no `email` column,
    raises InvalidInput and nothing is imported. Open the file with newline="" so that
    quoted line breaks are seen for what they are.

    A known address keeps whatever a cell leaves empty. An import never subscribes a
    reader who unsubscribed, nor one on the suppression list, nor one whose mail bounced
    or who complained: those rows are refused. Duplicate addresses after the first are
    refused. The caller commits; a dry run rolls its own work back before returning.
    """
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}")
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not dry_run:
        return _import(session, stream, default_language, default_time_zone, now, chunk_size)
    savepoint = session.begin_nested()
    try:
        report = _import(session, stream, default_language, default_time_zone, now, chunk_size)
    finally:
        savepoint.rollback()
    report.dry_run = True
    report.pending_subscriber_ids = []
    report.confirmed_newsletters = {}
    return report


@dataclass(slots=True)
class _Row:
    """A row whose cells are valid; None means the cell was empty."""

    line: int
    email: str
    key: str
    name: str | None
    language: str | None
    topics: list[str] | None
    newsletter_id: int
    confirmed: bool


@dataclass(frozen=True, slots=True)
class _Known:
    id: int
    status: str
    name: str
    language: str
    topics: list[str]


@dataclass(frozen=True, slots=True)
class _KnownSubscription:
    id: int
    status: str
    unsubscribed_at: datetime | None


def _import(
    session: Session,
    stream: TextIO,
    default_language: str,
    default_time_zone: str,
    now: datetime,
    chunk_size: int,
) -> ImportReport:
    reader = csv.reader(stream)
    columns = _columns(_read_header(reader))
    newsletter_ids = {
        slug: id_ for id_, slug in session.execute(select(Newsletter.id, Newsletter.slug))
    }
    report = ImportReport()
    # Every address read so far, with its line, so that a later duplicate can say which.
    first_line: dict[str, int] = {}
    chunk: list[_Row] = []
    for line, cells in _read_rows(reader):
        try:
            row = _parse_row(line, cells, columns, newsletter_ids)
        except _Refused as refusal:
            report.refused.append((line, refusal.reason))
            continue
        earlier = first_line.setdefault(row.key, line)
        if earlier != line:
            report.refused.append((line, f"duplicate of line {earlier}"))
            continue
        chunk.append(row)
        if len(chunk) >= chunk_size:
            _store_chunk(session, chunk, report, default_language, default_time_zone, now)
            chunk = []
    if chunk:
        _store_chunk(session, chunk, report, default_language, default_time_zone, now)
    report.refused.sort(key=lambda refusal: refusal[0])
    return report


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_header(reader: CSVReader) -> list[str]:
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("file", f"The first line cannot be read: {exc}.") from None
    if header is None:
        raise InvalidInput("file", "The file is empty; its first line must name the columns.")
    return list(header)


def _read_rows(reader: CSVReader) -> Iterator[tuple[int, list[str]]]:
    """(line where the row starts, its cells) for each row that is not blank."""
    started = reader.line_num + 1
    try:
        for cells in reader:
            line, started = started, reader.line_num + 1
            if any(cell.strip() for cell in cells):
                yield line, cells
    except csv.Error as exc:
        raise InvalidInput("file", f"Line {started} cannot be read as CSV: {exc}.") from None
    except UnicodeDecodeError:
        raise InvalidInput(
            "file", f"Line {started} is not text in the file's encoding (UTF-8?)."
        ) from None


def _columns(header: list[str]) -> list[str]:
    # A spreadsheet's UTF-8 export may begin with a byte order mark.
    columns = [name.strip().lstrip("\ufeff").strip().lower() for name in header]
    known = ", ".join(COLUMNS)
    for number, name in enumerate(columns, start=1):
        if not name:
            raise InvalidInput("file", f"Column {number} has no name; the columns are {known}.")
        if name not in COLUMNS and name not in EXPORTED_ONLY:
            raise InvalidInput(
                "file",
                f"The file has a column {name[:40]!r} we do not know; the columns are {known}.",
            )
        if columns.count(name) > 1:
            raise InvalidInput("file", f"The file has the column {name!r} twice.")
    if "email" not in columns:
        raise InvalidInput("file", f"The file has no email column; the columns are {known}.")
    return columns


def _parse_row(
    line: int, values: list[str], columns: list[str], newsletter_ids: dict[str, int]
) -> _Row:
    if len(values) > len(columns):
        raise _Refused(
            f"the row has {len(values)} cells but the first line names {len(columns)} columns"
        )
    # A short row is read as if its missing cells at the end were empty. Cells are read
    # as our export wrote them: the quote that kept a spreadsheet from running
    # `=1+2@example.com` as a formula comes off (spreadsheets.read_cell).
    cells = dict(zip(columns, map(spreadsheets.read_cell, values), strict=False))
    raw_email = cells.get("email", "")
    if not raw_email.strip():
        raise _Refused("no email address")
    try:
        email, key = clean_email(raw_email, to_mail=True)
    except InvalidInput as exc:
        raise _Refused(f"{_shown(raw_email)}: {exc.message}") from None
    try:
        name = clean_text("name", cells.get("name")) or None
        raw_language = cells.get("language", "")
        language = clean_language(raw_language, default="") if raw_language.strip() else None
        # Semicolons as well as commas: inside a comma-separated file they need no quotes.
        topics = clean_topics(cells.get("topics", "").replace(";", ",").split(",")) or None
        slugs = clean_slugs(cells.get("newsletter", ""))
    except InvalidInput as exc:
        column = "newsletter" if exc.field == "newsletters" else exc.field
        raise _Refused(f"{column} {_shown(cells.get(column, ''))}: {exc.message}") from None
    if len(slugs) > 1:
        raise _Refused(f"newsletter {_shown(cells['newsletter'])}: one newsletter per row")
    slug = slugs[0] if slugs else DEFAULT_SLUG
    if slug not in newsletter_ids:
        raise _Refused(str(UnknownNewsletter(slug)))
    confirmed = cells.get("confirmed", "").strip().lower()
    if confirmed not in _YES and confirmed not in _NO:
        raise _Refused(
            f"confirmed {_shown(cells['confirmed'])}: say true or false (yes/no, 1/0), or nothing"
        )
    return _Row(
        line=line,
        email=email,
        key=key,
        name=name,
        language=language,
        topics=topics,
        newsletter_id=newsletter_ids[slug],
        confirmed=confirmed in _YES,
    )


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN_LENGTH else value[:_SHOWN_LENGTH] + "…")


def _store_chunk(
    session: Session,
    rows: list[_Row],
    report: ImportReport,
    default_language: str,
    default_time_zone: str,
    now: datetime,
) -> None:
    """Apply one chunk of valid rows with a handful of statements, whatever its size."""
    suppressed = listed_keys(session, [row.key for row in rows])
    known = _known_readers(session, [row.key for row in rows])
    subscriptions = _known_subscriptions(session, [reader.id for reader in known.values()])
    new_ids = _insert_new_subscribers(
        session,
        [row for row in rows if row.key not in known and row.key not in suppressed],
        default_language=default_language,
        default_time_zone=default_time_zone,
        now=now,
    )

    writes = _Writes(now, report)
    for row in rows:
        if row.key in suppressed:
            report.refused.append((row.line, "on the suppression list"))
        elif row.key in new_ids:
            writes.event(new_ids[row.key], EventKind.SIGNED_UP)
            writes.subscribe(new_ids[row.key], row)
            report.added += 1
        else:
            reader = known[row.key]
            _update_known_reader(
                reader, subscriptions.get((reader.id, row.newsletter_id)), row, writes, report
            )
    writes.execute(session)


def _update_known_reader(
    reader: _Known,
    subscription: _KnownSubscription | None,
    row: _Row,
    writes: _Writes,
    report: ImportReport,
) -> None:
    if reader.status != SubscriberStatus.ACTIVE:
        report.refused.append((row.line, f"not mailed: the address is marked {reader.status}"))
        return
    if subscription is not None and subscription.status == SubscriptionStatus.UNSUBSCRIBED:
        # The reader's own choice: an editor's list must not overrule it.
        when = f" on {subscription.unsubscribed_at.date()}" if subscription.unsubscribed_at else ""
        report.refused.append(
            (row.line, f"unsubscribed{when}; only the reader can subscribe again")
        )
        return

    changed = writes.change_profile(reader, row)
    if subscription is None:
        writes.subscribe(reader.id, row)
        changed = True
    elif subscription.status == SubscriptionStatus.PENDING and row.confirmed:
        writes.confirm(reader.id, subscription.id, row.newsletter_id)
        changed = True
    if changed:
        report.updated += 1
    else:
        report.unchanged += 1


def _known_readers(session: Session, keys: list[str]) -> dict[str, _Known]:
    rows = session.execute(
        select(
            Subscriber.email_key,
            Subscriber.id,
            Subscriber.status,
            Subscriber.name,
            Subscriber.language,
            Subscriber.topics,
        ).where(Subscriber.email_key.in_(keys))
    )
    return {
        key: _Known(id_, status, name, language, list(topics))
        for key, id_, status, name, language, topics in rows
    }


def _known_subscriptions(
    session: Session, subscriber_ids: list[int]
) -> dict[tuple[int, int], _KnownSubscription]:
    """The subscriptions of these subscribers, by (subscriber id, newsletter id)."""
    if not subscriber_ids:
        return {}
    rows = session.execute(
        select(
            Subscription.subscriber_id,
            Subscription.newsletter_id,
            Subscription.id,
            Subscription.status,
            Subscription.unsubscribed_at,
        ).where(Subscription.subscriber_id.in_(subscriber_ids))
    )
    return {
        (subscriber_id, newsletter_id): _KnownSubscription(id_, status, unsubscribed_at)
        for subscriber_id, newsletter_id, id_, status, unsubscribed_at in rows
    }


class _Writes:
    """A chunk's changes, gathered row by row and then written in a few bulk statements."""

    def __init__(self, now: datetime, report: ImportReport) -> None:
        self.now = now
        self.report = report
        self.new_subscriptions: list[dict[str, Any]] = []
        self.confirmed_subscriptions: list[dict[str, Any]] = []
        self.changed_profiles: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def event(
        self, subscriber_id: int, kind: EventKind, newsletter_id: int | None = None, **detail: Any
    ) -> None:
        # The same rows as subscribers.record_event would add, one by one.
        self.events.append(
            {
                "subscriber_id": subscriber_id,
                "kind": kind,
                "newsletter_id": newsletter_id,
                "delivery_id": None,
                "detail": {"source": SOURCE, **detail},
                "created_at": self.now,
            }
        )

    def subscribe(self, subscriber_id: int, row: _Row) -> None:
        status = SubscriptionStatus.SUBSCRIBED if row.confirmed else SubscriptionStatus.PENDING
        self.new_subscriptions.append(
            {
                "subscriber_id": subscriber_id,
                "newsletter_id": row.newsletter_id,
                "status": status,
                "created_at": self.now,
                "confirmed_at": self.now if row.confirmed else None,
                "consent_source": SOURCE,
            }
        )
        if row.confirmed:
            self.event(subscriber_id, EventKind.CONFIRMED, row.newsletter_id)
            self.report.confirmed_newsletters.setdefault(subscriber_id, []).append(
                row.newsletter_id
            )
        else:
            self.report.pending += 1
            self.report.pending_subscriber_ids.append(subscriber_id)

    def confirm(self, subscriber_id: int, subscription_id: int, newsletter_id: int) -> None:
        self.confirmed_subscriptions.append(
            {
                "id": subscription_id,
                "status": SubscriptionStatus.SUBSCRIBED,
                "confirmed_at": self.now,
                "unsubscribed_at": None,
                "consent_source": SOURCE,
                "consent_ip": None,
            }
        )
        self.event(subscriber_id, EventKind.CONFIRMED, newsletter_id)
        self.report.confirmed_newsletters.setdefault(subscriber_id, []).append(newsletter_id)

    def change_profile(self, reader: _Known, row: _Row) -> bool:
        """Take the row's non-empty cells; whether that changes anything."""
        profile = {
            "name": row.name or reader.name,
            "language": row.language or reader.language,
            "topics": row.topics if row.topics is not None else reader.topics,
        }
        fields = [name for name, value in profile.items() if value != getattr(reader, name)]
        if not fields:
            return False
        # Every update carries the same columns, so that they go out as one executemany.
        self.changed_profiles.append({"id": reader.id, **profile, "updated_at": self.now})
        self.event(reader.id, EventKind.PREFERENCES_CHANGED, fields=fields)
        return True

    def execute(self, session: Session) -> None:
        if self.changed_profiles:
            session.execute(update(Subscriber), self.changed_profiles)
        if self.confirmed_subscriptions:
            session.execute(update(Subscription), self.confirmed_subscriptions)
        # render_nulls: without it the ORM leaves None values out, so that rows with and
        # without a confirmed_at (or a newsletter_id) split into many small statements.
        if self.new_subscriptions:
            session.execute(
                insert(Subscription).execution_options(render_nulls=True), self.new_subscriptions
            )
        if self.events:
            session.execute(
                insert(SubscriberEvent).execution_options(render_nulls=True), self.events
            )


def _insert_new_subscribers(
    session: Session,
    rows: list[_Row],
    *,
    default_language: str,
    default_time_zone: str,
    now: datetime,
) -> dict[str, int]:
    """Insert the chunk's new readers; their ids by address key."""
    if not rows:
        return {}
    # status and soft_bounce_count are left to the models' defaults, which bulk inserts apply.
    values = [
        {
            "email": row.email,
            "email_key": row.key,
            "name": row.name or "",
            "language": row.language or default_language,
            "time_zone": default_time_zone,
            "topics": row.topics or [],
            "created_at": now,
            "updated_at": now,
        }
        for row in rows
    ]
    # An executemany and a SELECT of the ids: with psycopg, INSERT ... RETURNING of many rows
    # is twice as slow, most of it spent converting one huge statement's placeholders.
    session.execute(insert(Subscriber), values)
    inserted = session.execute(
        select(Subscriber.email_key, Subscriber.id).where(
            Subscriber.email_key.in_([row.key for row in rows])
        )
    )
    return {key: id_ for key, id_ in inserted}
