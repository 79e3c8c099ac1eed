"""The dashboard's numbers: subscribers, messages sent, bounce and complaint rates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from newsletter.core.clock import utcnow
from newsletter.core.models import BounceEvent, BounceKind, Delivery, DeliveryStatus
from newsletter.subscribers import reader_status
from newsletter.subscribers.reader_status import ReaderStatus

RATE_DAYS = 30
# The source of a bounce recorded from the relay's own 5xx reply while sending.
SMTP_SOURCE = "smtp"
# Hours and days as the database groups them: UTC, as text.
HOUR_KEY = "%Y-%m-%d %H"
DAY_KEY = "%Y-%m-%d"
_SQLITE_FORMATS = {"hour": HOUR_KEY, "day": DAY_KEY}
_POSTGRES_FORMATS = {"hour": "YYYY-MM-DD HH24", "day": "YYYY-MM-DD"}


@dataclass(frozen=True)
class Summary:
    """The dashboard's cards, from the database alone."""

    # Readers by status (subscribers.reader_status): the words of every page and /metrics.
    readers: dict[str, int]
    sent_last_24h: int
    sent_last_30d: int
    hard_bounces_last_30d: int
    complaints_last_30d: int
    queued_deliveries: int
    sending_deliveries: int

    # Refused with a 5xx while sending: offered to the relay, never "sent", but a hard bounce.
    refused_last_30d: int = 0

    @property
    def subscribed(self) -> int:
        """Readers who receive at least one newsletter (may be mailed it)."""
        return self.readers.get(ReaderStatus.SUBSCRIBED, 0)

    @property
    def bounce_rate(self) -> float | None:
        return _rate(self.hard_bounces_last_30d, self.sent_last_30d + self.refused_last_30d)

    @property
    def complaint_rate(self) -> float | None:
        return _rate(self.complaints_last_30d, self.sent_last_30d + self.refused_last_30d)


@dataclass(frozen=True)
class HourCount:
    hour: datetime  # the start of the hour, UTC
    sent: int


@dataclass(frozen=True)
class DayRates:
    day: date  # a UTC day
    sent: int
    hard_bounces: int
    complaints: int
    refused: int = 0  # 5xx while sending

    @property
    def offered(self) -> int:
        """Digest messages handed to the relay that day: accepted or refused at once."""
        return self.sent + self.refused

    @property
    def bounce_rate(self) -> float | None:
        return _rate(self.hard_bounces, self.offered)

    @property
    def complaint_rate(self) -> float | None:
        return _rate(self.complaints, self.offered)


def summary(session: Session, *, now: datetime | None = None) -> Summary:
    """Readers by status, messages sent lately, hard bounces and complaints of 30 days."""
    now = now or utcnow()
    month_ago = now - timedelta(days=RATE_DAYS)
    return Summary(
        readers=reader_status.count_by_status(session),
        sent_last_24h=_sent_between(session, now - timedelta(hours=24), now),
        sent_last_30d=_sent_between(session, month_ago, now),
        hard_bounces_last_30d=_events_between(session, BounceKind.HARD, month_ago, now),
        complaints_last_30d=_events_between(session, BounceKind.COMPLAINT, month_ago, now),
        refused_last_30d=_events_between(
            session, BounceKind.HARD, month_ago, now, source=SMTP_SOURCE
        ),
        queued_deliveries=_deliveries_in(session, DeliveryStatus.QUEUED),
        sending_deliveries=_deliveries_in(session, DeliveryStatus.SENDING),
    )


def sent_per_hour(
    session: Session, *, hours: int = 48, now: datetime | None = None
) -> list[HourCount]:
    """Messages sent in each of the last `hours` hours, oldest first, the current one last."""
    now = now or utcnow()
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(hours=hours - 1)
    bucket = _truncated(session, Delivery.sent_at, "hour")
    rows = session.execute(
        select(bucket, func.count())
        .where(Delivery.sent_at >= first, Delivery.sent_at <= now)
        .group_by(bucket)
    ).all()
    counts = {str(key): int(n) for key, n in rows}
    return [
        HourCount(hour=hour, sent=counts.get(hour.strftime(HOUR_KEY), 0))
        for hour in (first + timedelta(hours=i) for i in range(hours))
    ]


def rates_per_day(
    session: Session, *, days: int = RATE_DAYS, now: datetime | None = None
) -> list[DayRates]:
    """For each of the last `days` UTC days: messages sent, hard bounces and complaints.

    The rates are of digest messages: bounces and complaints about a confirmation or a
    welcome email (no delivery) are counted in neither part, and a 5xx while sending is
    counted in both (offered to the relay, refused). Events count on the day they arrive.
    """
    now = now or utcnow()
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    sent_bucket = _truncated(session, Delivery.sent_at, "day")
    sent = {
        str(key): int(n)
        for key, n in session.execute(
            select(sent_bucket, func.count())
            .where(Delivery.sent_at >= start, Delivery.sent_at <= now)
            .group_by(sent_bucket)
        ).all()
    }
    event_bucket = _truncated(session, BounceEvent.created_at, "day")
    refused_at_send = case((BounceEvent.source == SMTP_SOURCE, "refused"), else_=BounceEvent.kind)
    events: dict[tuple[str, str], int] = {}
    for key, kind, from_smtp, n in session.execute(
        select(event_bucket, BounceEvent.kind, refused_at_send, func.count())
        .where(
            BounceEvent.kind.in_([BounceKind.HARD, BounceKind.COMPLAINT]),
            BounceEvent.delivery_id.is_not(None),
            BounceEvent.created_at >= start,
            BounceEvent.created_at <= now,
        )
        .group_by(event_bucket, BounceEvent.kind, refused_at_send)
    ).all():
        events[(str(key), str(kind))] = events.get((str(key), str(kind)), 0) + int(n)
        if from_smtp == "refused":
            events[(str(key), "refused")] = int(n)
    found = []
    for day in (first + timedelta(days=i) for i in range(days)):
        key = day.strftime(DAY_KEY)
        found.append(
            DayRates(
                day=day,
                sent=sent.get(key, 0),
                hard_bounces=events.get((key, BounceKind.HARD), 0),
                complaints=events.get((key, BounceKind.COMPLAINT), 0),
                refused=events.get((key, "refused"), 0),
            )
        )
    return found


# --- helpers -------------------------------------------------------------------------

_TimeColumn = InstrumentedAttribute[datetime | None] | InstrumentedAttribute[datetime]


def _truncated(session: Session, column: _TimeColumn, unit: str) -> ColumnElement[str]:
    """The UTC hour or day of a time as text ('2026-11-20 08'), grouped in the database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), _POSTGRES_FORMATS[unit])
    # SQLite keeps UTC times as text, 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return func.strftime(_SQLITE_FORMATS[unit], column)


def _sent_between(session: Session, start: datetime, end: datetime) -> int:
    return (
        session.scalar(
            select(func.count()).where(Delivery.sent_at >= start, Delivery.sent_at <= end)
        )
        or 0
    )


def _events_between(
    session: Session, kind: str, start: datetime, end: datetime, *, source: str | None = None
) -> int:
    """Bounces or complaints about digest messages (with a delivery) in the time given."""
    query = select(func.count()).where(
        BounceEvent.kind == kind,
        BounceEvent.delivery_id.is_not(None),
        BounceEvent.created_at >= start,
        BounceEvent.created_at <= end,
    )
    if source is not None:
        query = query.where(BounceEvent.source == source)
    return session.scalar(query) or 0


def _deliveries_in(session: Session, status: str) -> int:
    return session.scalar(select(func.count()).where(Delivery.status == status)) or 0


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None
