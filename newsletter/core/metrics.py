"""Prometheus counters kept by every process: what the pipeline counts as it goes.

Web and worker processes (and each of a worker's pool processes) count into files under
PROMETHEUS_MULTIPROC_DIR (`<var_dir>/metrics` by default); the /metrics scrape adds them
up (newsletter.ops.gauges). Every layer may count here; nothing here reads the database.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from prometheus_client import Counter, Histogram, values

from newsletter.core.config import Settings, get_settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
# A delivery's outcome as the sender saw it; "retried": a temporary failure, tried later.
DELIVERY_OUTCOMES = ("sent", "bounced", "failed", "skipped", "retried")
REPLY_CLASSES = ("2xx", "4xx", "5xx", "dropped")
BOUNCE_KINDS = ("hard", "soft", "complaint")
LINK_KINDS = ("click", "open")
LINK_WHO = ("reader", "machine")
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


def register_counters() -> None:
    """Make this process's series exist (at zero) even before it counts anything."""
    _metrics()


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


def count_link_hits(kind: str, *, readers: int, machines: int) -> None:
    """Clicks or opens written from the buffer: readers' and machines' apart."""
    if kind not in LINK_KINDS:
        return
    _metrics().link_hits.labels(kind, "reader").inc(readers)
    _metrics().link_hits.labels(kind, "machine").inc(machines)


def count_signup() -> None:
    _metrics().signups.inc()


def count_confirmation() -> None:
    _metrics().confirmations.inc()


def count_unsubscribe() -> None:
    _metrics().unsubscribes.inc()


# --- the counters themselves ---------------------------------------------------------


@dataclass(frozen=True)
class _Metrics:
    deliveries: Counter
    send_seconds: Histogram
    smtp_replies: Counter
    bounces: Counter
    link_hits: Counter
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
        link_hits=Counter(
            "newsletter_link_hits",
            "Clicks and opens of digests recorded, by kind and by who: reader or machine.",
            ["kind", "who"],
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
    for kind in LINK_KINDS:
        for who in LINK_WHO:
            metrics.link_hits.labels(kind, who)
    return metrics


def _reply_class(code: int | None) -> str:
    if code is None or not 200 <= code < 600:
        return "dropped"
    return f"{code // 100}xx" if code >= 400 else "2xx"
