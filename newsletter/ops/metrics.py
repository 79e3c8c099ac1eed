"""Prometheus metrics: counters kept by every process, gauges read from the database at scrape.

Web and worker processes (and each of a worker's forked children) count into files under
PROMETHEUS_MULTIPROC_DIR (`<var_dir>/metrics` by default); a scrape adds them up with
prometheus-client's MultiProcessCollector and the gauges computed then from the database
and the broker.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.core.config import Settings, get_settings
from newsletter.core.models import (
    Delivery,
    Digest,
    DigestState,
    Subscriber,
    SubscriberStatus,
)

ENV = "PROMETHEUS_MULTIPROC_DIR"
# A delivery's outcome as the sender saw it; "retried": a temporary failure, tried later.
DELIVERY_OUTCOMES = ("sent", "bounced", "failed", "skipped", "retried")
REPLY_CLASSES = ("2xx", "4xx", "5xx", "dropped")
BOUNCE_KINDS = ("hard", "soft", "complaint")
# One SMTP transaction (MAIL, RCPT, DATA) to the relay: milliseconds on a LAN relay,
# seconds on a slow or far one.
SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def setup_multiprocess(settings: Settings, *, wipe: bool = False) -> Path:
    """Point prometheus-client at the shared metrics folder (unless already set); create it.

    Call it early in every process — before any metric is counted — so that all of them
    write where the scrape reads. `wipe=True` empties the folder: only for the one process
    that starts the others (`newsletter up`), before it starts them.
    """
    os.environ.setdefault(ENV, str(settings.var_dir / "metrics"))
    directory = Path(os.environ[ENV])
    if wipe and directory.is_dir():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def render_metrics(session: Session, settings: Settings) -> tuple[bytes, str]:
    """The scrape's body and content type: every process's counters and the current gauges."""
    directory = setup_multiprocess(settings)
    _metrics()  # this process's series exist (at zero) even before it counts anything
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(StateCollector(session, settings))
    return generate_latest(registry), CONTENT_TYPE_LATEST


# --- counting, from the pipeline -------------------------------------------------------


def count_delivery(status: str) -> None:
    """One delivery's outcome at send time: sent, bounced, failed, skipped or retried."""
    _metrics().deliveries.labels(status if status in DELIVERY_OUTCOMES else "other").inc()


def observe_send(seconds: float) -> None:
    """How long one message took to hand to the relay."""
    _metrics().send_seconds.observe(seconds)


def count_smtp_reply(code: int | None) -> None:
    """The relay's final reply to one message; None: the connection dropped."""
    _metrics().smtp_replies.labels(_reply_class(code)).inc()


def count_bounce(kind: str) -> None:
    """A bounce or complaint acted on: hard, soft or complaint."""
    _metrics().bounces.labels(kind if kind in BOUNCE_KINDS else "other").inc()


def count_signup() -> None:
    _metrics().signups.inc()


def count_confirmation() -> None:
    _metrics().confirmations.inc()


def count_unsubscribe() -> None:
    _metrics().unsubscribes.inc()


# --- gauges, read at scrape time -----------------------------------------------------


class StateCollector(Collector):
    """Gauges of what is, asked at each scrape: digests, readers, the broker's queues."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    def collect(self) -> Iterable[Metric]:
        yield from self._database()
        yield from self._broker()

    def _database(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("newsletter_database_up", "1 when the database answered.")
        try:
            digests: dict[str, int] = {
                state: count
                for state, count in self.session.execute(
                    select(Digest.state, func.count()).group_by(Digest.state)
                ).all()
            }
            readers: dict[str, int] = {
                status: count
                for status, count in self.session.execute(
                    select(Subscriber.status, func.count()).group_by(Subscriber.status)
                ).all()
            }
            progress_rows = self.session.execute(
                select(Delivery.digest_id, Delivery.status, func.count())
                .join(Digest, Digest.id == Delivery.digest_id)
                .where(Digest.state.in_([DigestState.SENDING, DigestState.PAUSED]))
                .group_by(Delivery.digest_id, Delivery.status)
            ).all()
        except SQLAlchemyError:
            self.session.rollback()
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        by_state = GaugeMetricFamily("newsletter_digests", "Digests by state.", labels=["state"])
        for state in DigestState:
            by_state.add_metric([state.value], digests.get(state, 0))
        yield by_state

        by_status = GaugeMetricFamily(
            "newsletter_subscribers", "Subscribers by status.", labels=["status"]
        )
        for reader_status in SubscriberStatus:
            by_status.add_metric([reader_status.value], readers.get(reader_status, 0))
        yield by_status

        in_flight = GaugeMetricFamily(
            "newsletter_digest_deliveries",
            "Deliveries of the digests being sent or paused, by status.",
            labels=["digest_id", "status"],
        )
        for digest_id, status, count in progress_rows:
            in_flight.add_metric([str(digest_id), str(status)], count)
        yield in_flight

    def _broker(self) -> Iterator[Metric]:
        # Imported here: the pipeline's modules import this one to count, and monitoring
        # imports the pipeline.
        from newsletter.ops import monitoring

        depths = monitoring.queue_depths(self.settings.broker_url)
        up = GaugeMetricFamily("newsletter_broker_up", "1 when the broker answered.")
        up.add_metric([], 0 if any("error" in d for d in depths) else 1)
        yield up
        ready = GaugeMetricFamily(
            "newsletter_queue_ready", "Messages waiting in a queue.", labels=["queue"]
        )
        unacked = GaugeMetricFamily(
            "newsletter_queue_unacked",
            "Messages taken by a worker and not yet acknowledged (Redis only).",
            labels=["queue"],
        )
        for depth in depths:
            if depth["ready"] is not None:
                ready.add_metric([depth["queue"]], depth["ready"])
            if depth["unacked"] is not None:
                unacked.add_metric([depth["queue"]], depth["unacked"])
        yield ready
        yield unacked


# --- the counters themselves ---------------------------------------------------------


@dataclass(frozen=True)
class _Metrics:
    deliveries: Counter
    send_seconds: Histogram
    smtp_replies: Counter
    bounces: Counter
    signups: Counter
    confirmations: Counter
    unsubscribes: Counter


@lru_cache(maxsize=1)
def _metrics() -> _Metrics:
    """The counters, made on first use: by then the multiprocess folder is set."""
    setup_multiprocess(get_settings())
    if values.ValueClass is values.MutexValue:
        # prometheus-client chose its value store when first imported, perhaps before the
        # folder was set: choose again, or this process's counts would never reach a scrape.
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    metrics = _Metrics(
        deliveries=Counter(
            "newsletter_deliveries",
            "Deliveries by outcome at send time.",
            ["status"],
            registry=None,
        ),
        send_seconds=Histogram(
            "newsletter_send_seconds",
            "Time to hand one message to the relay.",
            buckets=SEND_BUCKETS,
            registry=None,
        ),
        smtp_replies=Counter(
            "newsletter_smtp_replies",
            "The relay's final replies by class; dropped: the connection was lost.",
            ["class"],
            registry=None,
        ),
        bounces=Counter(
            "newsletter_bounces",
            "Bounces and complaints acted on, by kind.",
            ["kind"],
            registry=None,
        ),
        signups=Counter("newsletter_signups", "Signups recorded.", registry=None),
        confirmations=Counter(
            "newsletter_confirmations", "Subscriptions confirmed.", registry=None
        ),
        unsubscribes=Counter("newsletter_unsubscribes", "Unsubscribes.", registry=None),
    )
    # Every series exists from the start, at zero: a rate over a missing series is no rate.
    for outcome in DELIVERY_OUTCOMES:
        metrics.deliveries.labels(outcome)
    for reply_class in REPLY_CLASSES:
        metrics.smtp_replies.labels(reply_class)
    for kind in BOUNCE_KINDS:
        metrics.bounces.labels(kind)
    return metrics


def _reply_class(code: int | None) -> str:
    if code is None or not 200 <= code < 600:
        return "dropped"
    return f"{code // 100}xx" if code >= 400 else "2xx"
