"""The /metrics scrape: every process's counters added up, and gauges read at that moment.

The counters are kept by each process as it works (newsletter.core.metrics); the gauges
here are asked of the database and the broker at each scrape, by the /metrics route only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.core import metrics
from newsletter.core.config import Settings
from newsletter.core.models import Delivery, Digest, DigestState
from newsletter.ops import monitoring
from newsletter.subscribers import reader_status


def render_metrics(session: Session, settings: Settings) -> tuple[bytes, str]:
    """The scrape's body and content type: every process's counters and the current gauges."""
    directory = metrics.setup_multiprocess(settings)
    metrics.register_counters()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(StateCollector(session, settings))
    return generate_latest(registry), CONTENT_TYPE_LATEST


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
            # The readers' status in the words of every page and of the CLI.
            readers = reader_status.count_by_status(self.session)
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
            "newsletter_subscribers",
            "Subscribers by status: pending, subscribed, unsubscribed, bounced, complained, "
            "suppressed.",
            labels=["status"],
        )
        for status, count in readers.items():
            by_status.add_metric([status], count)
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
