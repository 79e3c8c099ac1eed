"""The queue: the one Celery app, configured explicitly, and jobs sent to it by task name.

Importing this makes an unconfigured app and connects the worker's hooks; it reads no
settings and creates nothing. The worker entry point (worker.py), the CLI and the web app
factory call configure() with their settings. Web routes and CLI commands never import
newsletter.tasks: jobs are sent by name (send_task), and the worker, which imports the
tasks, runs them.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from kombu.entity import Queue

from newsletter.app.heartbeat import Heartbeat
from newsletter.app.jobs import Job
from newsletter.core import db
from newsletter.core.config import Settings, get_settings
from newsletter.core.logs import configure_logging
from newsletter.core.metrics import register_counters, setup_multiprocess
from newsletter.sending import workers

celery = Celery("newsletter", include=["newsletter.tasks.jobs"])


def configure(settings: Settings) -> Celery:
    """Point the app at the settings' broker (tests call this again after changing them)."""
    # Before any task counts anything: every process of a worker writes where /metrics reads.
    setup_multiprocess(settings)
    celery.conf.update(
        broker_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged only once it has run, and given back to the broker if its
        # worker dies: no task is lost when a worker is killed.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # On SQLite the pool is threads: nothing is forked. SQLite keeps the state of its
        # locks, and its own mutexes, in the process's memory: a process forked while the
        # heartbeat's thread was inside SQLite inherits locks that nobody will release,
        # and cannot write, or even connect, ever after. A pool process replaced after a
        # kill was forked just so. The embedded broker (kombu keeps its engine for the
        # whole process) would hand the parent's own SQLite connections to the child,
        # which SQLite forbids outright. PostgreSQL and Redis keep nothing of the kind.
        worker_pool="threads" if settings.uses_sqlite else "prefork",
        worker_hijack_root_logger=False,
        beat_schedule_filename=str(settings.var_dir / "celerybeat-schedule"),
        # A task a dead worker held comes back after this long (Redis): above any batch's
        # run time and any retry countdown, or a live task would be run twice.
        # kombu's global_keyprefix puts the installation's prefix before every key it uses.
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout,
            **(
                {"global_keyprefix": settings.redis_key_prefix} if settings.redis_key_prefix else {}
            ),
        }
        if settings.uses_redis
        else {},
        beat_schedule={
            "tick": {"task": "newsletter.tick", "schedule": 10.0},
            "poll-bounce-mailbox": {"task": "newsletter.poll_bounce_mailbox", "schedule": 60.0},
            "purge-bounce-sources": {"task": "newsletter.purge_bounce_sources", "schedule": 3600.0},
            # Clicks and opens wait in a buffer (analytics/buffer.py): written every 10 s.
            "record-link-hits": {"task": "newsletter.record_link_hits", "schedule": 10.0},
            "purge-link-events": {"task": "newsletter.purge_link_events", "schedule": 3600.0},
            "fetch-feeds": {
                "task": "newsletter.fetch_feeds",
                "schedule": settings.feed_poll_minutes * 60.0,
            },
        },
    )
    return celery


def declare_work_queue(settings: Settings) -> None:
    """Make the work queue on the broker once, before `newsletter up` starts its processes.

    On the embedded (SQLite) broker the web process and the worker would otherwise both
    create it in their first second, and the loser of that race (a unique name) fails: the
    worker stops, and the signup page answers 503. Two of these at once (two `init`s on one
    var/) race the same way: the loser finds the winner's queue when it asks again.
    """
    from sqlalchemy.exc import IntegrityError

    for attempt in range(3):
        try:
            with celery.connection_for_write() as connection:
                Queue(settings.queue).bind(connection.default_channel).declare()
            return
        except IntegrityError:
            if attempt == 2:
                raise


class CeleryQueue:
    """The queue of a configured Celery app: each job sent by its task's name."""

    def __init__(self, app: Celery = celery) -> None:
        self.app = app

    def send(self, job: Job) -> None:
        # Plain JSON arguments, as the task is declared in newsletter.tasks.jobs. No result
        # is ever read: said here, send_task skips the result backend, which it would
        # otherwise build in every new thread (a scan of the installed packages' entry
        # points) before each first send.
        self.app.send_task(job.task, args=list(job.args), ignore_result=True)


@setup_logging.connect
def _logging(loglevel: str | int | None = None, **_: Any) -> None:
    # Connected, Celery leaves logging to us: the same one-line (or JSON) format as the web.
    routine = frozenset(str(entry["task"]) for entry in (celery.conf.beat_schedule or {}).values())
    configure_logging(get_settings(), level=loglevel or "INFO", routine_tasks=routine)


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool process must not reuse its parent's database sockets, nor close them.
    db.reset(close=False)


_heartbeat: Heartbeat | None = None


@worker_init.connect
def _new_instance(**_: Any) -> None:
    # Before the pool forks: every pool process claims under its worker's instance id.
    workers.new_instance()
    # Made once here, not by two of a threads pool's tasks at once (each would count in
    # counters of its own, and the one written last would win).
    register_counters()


@worker_ready.connect
def _on_duty(sender: Any = None, **_: Any) -> None:
    """The worker consumes: register it and start its heartbeat (sending.workers)."""
    from celery.worker import state

    global _heartbeat
    consumer = sender
    worker = getattr(consumer, "controller", None)
    name = str(getattr(consumer, "hostname", None) or getattr(worker, "hostname", "worker"))
    concurrency = int(getattr(worker, "concurrency", 0) or 0)
    _heartbeat = Heartbeat(
        get_settings(),
        name=name,
        concurrency=concurrency,
        load=lambda: (len(state.active_requests), sum(state.total_count.values())),
    )
    _heartbeat.start()


@worker_shutdown.connect
def _off_duty(**_: Any) -> None:
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None
