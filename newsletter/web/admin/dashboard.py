"""Admin dashboard: the home page, health at a glance (cards and server-drawn charts)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from newsletter.analytics import reports as analytics
from newsletter.core.clock import utcnow
from newsletter.core.config import get_settings
from newsletter.digests import upcoming
from newsletter.ops import charts, monitoring, stats
from newsletter.ops.charts import Bar, Point, Threshold
from newsletter.web.admin.auth import Admin, admin_page
from newsletter.web.deps import SessionDep

router = APIRouter(prefix="/admin", include_in_schema=False)

# Gmail's and Yahoo's bulk-sender rules (2024): keep spam complaints under 0.1%, never
# reach 0.3%. Hard bounces have no such published rule; above 2% an ESP starts asking.
COMPLAINT_RATE_RECOMMENDED = 0.001
COMPLAINT_RATE_MAXIMUM = 0.003
BOUNCE_RATE_WARNING = 0.02
# The levels drawn across the daily rate charts.
COMPLAINT_LEVELS = (
    Threshold(COMPLAINT_RATE_RECOMMENDED, "0.1% Gmail/Yahoo recommended", "warn"),
    Threshold(COMPLAINT_RATE_MAXIMUM, "0.3% Gmail/Yahoo maximum", "bad"),
)
BOUNCE_LEVELS = (Threshold(BOUNCE_RATE_WARNING, "2% usual warning level", "warn"),)
# The broker is asked on the side, and no longer than this: the page stays fast when it
# is down (kombu retries a refused connection for several seconds).
BROKER_DEADLINE_SECONDS = 2.0
PERIODS = {"48h": 48, "7d": 7 * 24}

# A few threads only: a broker that hangs holds them, and further pages then wait the
# deadline and say so, rather than piling up threads.
_broker_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dashboard-broker")


@router.get("")
def home(
    request: Request,
    admin: Admin,
    session: SessionDep,
    period: Annotated[Literal["48h", "7d"], Query()] = "48h",
) -> HTMLResponse:
    settings = get_settings()
    broker = broker_health(settings.broker_url)
    # The workers' heartbeats, as `newsletter status` and /readyz read them.
    broker.workers = monitoring.workers(session, settings)
    now = utcnow()
    summary = stats.summary(session, now=now)
    hours = stats.sent_per_hour(session, hours=PERIODS[period], now=now)
    days = stats.rates_per_day(session, now=now)
    return admin_page(
        request,
        "dashboard.html",
        admin,
        {
            "summary": summary,
            "sending": monitoring.sending_digests(session, now=now),
            "upcoming": upcoming.upcoming_sends(session, now=now),
            "top_stories": [s for s in analytics.top_stories(session, now=now) if s.readers],
            "broker": broker,
            "period": period,
            "periods": PERIODS,
            "percent": charts.percent,
            "charts": {
                "sent": sent_chart(hours, period),
                "bounces": bounce_chart(days),
                "complaints": complaint_chart(days),
                "queue": queue_chart(broker, summary),
            },
        },
    )


@dataclass
class BrokerHealth:
    """What the broker said in time (queue depths, or why we do not know), and the workers."""

    queues: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ready(self) -> int | None:
        return _total(q.get("ready") for q in self.queues)

    @property
    def unacked(self) -> int | None:
        return _total(q.get("unacked") for q in self.queues)

    @property
    def workers_online(self) -> int | None:
        if self.workers is None:
            return None
        return sum(1 for w in self.workers if w.get("online"))

    @property
    def online_names(self) -> list[str]:
        return [w["name"] for w in self.workers or [] if w.get("online")]

    @property
    def lost_names(self) -> list[str]:
        return [w["name"] for w in self.workers or [] if w.get("state") == "lost"]


def broker_health(broker_url: str, *, deadline: float | None = None) -> BrokerHealth:
    """Queue depths, asked on the side; if they miss the deadline they are unknown."""
    deadline = deadline or BROKER_DEADLINE_SECONDS
    queues: Future[list[dict[str, Any]]] = _broker_pool.submit(monitoring.queue_depths, broker_url)
    health = BrokerHealth()
    wait([queues], timeout=deadline)
    if queues.done():
        health.queues = queues.result()
        health.problems += sorted({q["error"] for q in health.queues if q.get("error")})
        health.notes += sorted({q["note"] for q in health.queues if q.get("note")})
    else:
        health.problems.append(f"The broker did not answer within {deadline:g} s.")
    return health


def sent_chart(hours: list[stats.HourCount], period: str) -> Markup:
    """Messages sent per hour; ticks every 6 hours over two days, at midnight over a week."""
    every = 6 if len(hours) <= 48 else 24
    bars = [
        Bar(
            label=f"{h.hour:%d %b %H:00} UTC",
            value=h.sent,
            tick=(f"{h.hour:%d %b}" if h.hour.hour == 0 else f"{h.hour:%H:00}")
            if h.hour.hour % every == 0
            else None,
        )
        for h in hours
    ]
    span = "48 hours" if period == "48h" else "7 days"
    return charts.column_chart(
        title=f"Messages sent per hour, last {span}",
        bars=bars,
        x_label="Hour (UTC)",
        y_label="Messages sent",
        unit=" sent",
    )


def bounce_chart(days: list[stats.DayRates]) -> Markup:
    rates = [(d.bounce_rate, d.hard_bounces) for d in days]
    return _rate_per_day("Hard bounce rate", days, rates, BOUNCE_LEVELS, "Hard bounces / sent")


def complaint_chart(days: list[stats.DayRates]) -> Markup:
    rates = [(d.complaint_rate, d.complaints) for d in days]
    return _rate_per_day("Complaint rate", days, rates, COMPLAINT_LEVELS, "Complaints / sent")


def queue_chart(broker: BrokerHealth, summary: stats.Summary) -> Markup:
    bars = []
    for queue in broker.queues:
        bars.append(Bar(f"{queue['queue']}: ready", queue.get("ready")))
        bars.append(Bar(f"{queue['queue']}: unacknowledged", queue.get("unacked")))
    if not broker.queues:
        bars.append(Bar("broker queue", None))
    bars.append(Bar("deliveries queued (database)", summary.queued_deliveries))
    bars.append(Bar("deliveries sending (database)", summary.sending_deliveries))
    return charts.bar_chart(title="Queue depth now", bars=bars, x_label="Messages")


def _rate_per_day(
    what: str,
    days: list[stats.DayRates],
    rates: list[tuple[float | None, int]],
    thresholds: Sequence[Threshold],
    y_label: str,
) -> Markup:
    """A chart of one rate a day, given with the count it comes from (of the messages sent)."""
    return charts.rate_chart(
        title=f"{what} per day, last {len(days)} days",
        points=[
            _day_point(day, rate, f"{count} of {day.offered} messages", index)
            for index, (day, (rate, count)) in enumerate(zip(days, rates, strict=True))
        ],
        thresholds=thresholds,
        x_label="Day (UTC)",
        y_label=y_label,
    )


def _day_point(day: stats.DayRates, rate: float | None, note: str, index: int) -> Point:
    return Point(
        label=f"{day.day:%d %b}",
        value=rate,
        tick=f"{day.day:%d %b}" if index % 5 == 0 else None,
        note=note,
    )


def _total(values: Any) -> int | None:
    numbers = list(values)
    if not numbers or any(n is None for n in numbers):
        return None
    return int(sum(numbers))
