"""What an operator watches: queue depths, workers, digests being sent, recent errors."""

from __future__ import annotations

import json
import smtplib
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, func, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.core import db
from newsletter.core.clock import utcnow
from newsletter.core.config import Settings, get_settings
from newsletter.core.logs import mask_address, mask_addresses
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    DigestState,
    Newsletter,
    Subscriber,
)
from newsletter.digests import reports, schedules, upcoming
from newsletter.sending import workers as worker_registry

# kombu's Redis transport keeps a queue's priorities in lists named <queue><sep><priority>.
REDIS_PRIORITY_SEPARATOR = "\x06\x16"
REDIS_PRIORITY_STEPS = (3, 6, 9)
REDIS_UNACKED_KEY = "unacked"
# Above this many unacknowledged messages, reading them all to split them by queue costs
# more than the answer is worth: the total is given instead.
UNACKED_SCAN_LIMIT = 5000
LAST_ERRORS = 10
ERROR_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.BOUNCED, DeliveryStatus.QUEUED)
READINESS_TIMEOUT = 2.0
# Brokers without broadcast, where Celery's ping goes unanswered whatever runs.
UNPINGABLE_BROKERS = ("sqla+", "filesystem")


def can_ping_workers(broker_url: str) -> bool:
    """Whether workers can be asked over this broker (the embedded SQL one has no broadcast)."""
    return not urlsplit(broker_url).scheme.startswith(UNPINGABLE_BROKERS)


def status(session: Session, app: Any, broker_url: str, *, timeout: float = 1.0) -> dict[str, Any]:
    """Everything `newsletter status` shows, as one JSON-ready object."""
    return {
        "generated_at": utcnow().isoformat(),
        "queues": queue_depths(broker_url),
        "workers": workers(session, get_settings(), app=app, timeout=timeout),
        "sending": sending_digests(session),
        "scheduled": [send.as_dict() for send in upcoming.upcoming_sends(session)],
        "waves": local_time_waves(session),
        "errors": last_errors(session),
    }


def queue_depths(broker_url: str, queues: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Per queue (the installation's own by default): messages ready and not yet acknowledged.

    A number the broker cannot give is None, with a note saying why; a broker that does not
    answer gives None everywhere and the error.
    """
    settings = get_settings()
    queues = queues or (settings.queue,)
    scheme = urlsplit(broker_url).scheme
    try:
        if scheme in {"redis", "rediss"}:
            return _redis_depths(broker_url, queues, prefix=settings.redis_key_prefix)
        if scheme.startswith("sqla+"):
            return _sqlalchemy_depths(broker_url.removeprefix("sqla+"), queues)
    except Exception as exc:  # the broker is down or odd: say so, never fail the whole status
        return [
            {"queue": name, "ready": None, "unacked": None, "error": _error(exc)} for name in queues
        ]
    return [
        {"queue": name, "ready": None, "unacked": None, "note": f"unknown for {scheme} brokers"}
        for name in queues
    ]


def workers(
    session: Session, settings: Settings, *, app: Any = None, timeout: float = 1.0
) -> list[dict[str, Any]]:
    """The workers by their heartbeats (sending.workers): online, then stopped or lost.

    The heartbeats are the one answer to "is a worker online", on every broker. Where the
    broker can carry a question (Redis), the online workers are also asked what they run.
    """
    found = [
        view.as_dict()
        for view in worker_registry.workers(
            session, lost_after=timedelta(seconds=settings.worker_lost_seconds)
        )
    ]
    for worker in found:
        worker["tasks"] = []
    if app is not None and can_ping_workers(settings.broker_url):
        names = [str(w["name"]) for w in found if w["online"]]
        running = _active_tasks(app, names, timeout=timeout) if names else {}
        for worker in found:
            worker["tasks"] = running.get(str(worker["name"]), [])
    return found


def _active_tasks(app: Any, names: list[str], *, timeout: float) -> dict[str, list[dict[str, Any]]]:
    """What each named worker runs now, as it says over the broker ({} if none answers)."""
    try:
        # A connection of our own, closed when done: one left in the app's pool mid-read
        # would hang any process this one forks later (kombu closes pooled ones after fork).
        with app.connection_for_write() as connection:
            inspect = app.control.inspect(
                destination=names, timeout=timeout, limit=len(names), connection=connection
            )
            active = inspect.active() or {}
    except Exception:  # the heartbeats already said who is online; the details can wait
        return {}
    return {name: [_task_summary(task) for task in tasks or []] for name, tasks in active.items()}


def sending_digests(session: Session, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Digests being sent or paused: their counts and how many went out in the last minute."""
    now = now or utcnow()
    ids = session.scalars(
        select(Digest.id)
        .where(Digest.state.in_([DigestState.SENDING, DigestState.PAUSED]))
        .order_by(Digest.id)
    ).all()
    minute_ago = now - timedelta(seconds=60)
    found = []
    for digest_id in ids:
        digest_status = reports.digest_status(session, digest_id, with_subjects=False)
        digest_status["per_minute"] = (
            session.scalar(
                select(func.count()).where(
                    Delivery.digest_id == digest_id, Delivery.sent_at >= minute_ago
                )
            )
            or 0
        )
        found.append(digest_status)
    return found


def local_time_waves(session: Session, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each local-time newsletter's waves from a day ago to a day ahead: sent, sending, next."""
    now = now or utcnow()
    found = []
    for newsletter in session.scalars(select(Newsletter).order_by(Newsletter.id)):
        shown = schedules.day_waves(session, newsletter, now=now)
        if shown or (newsletter.schedule_cron and newsletter.schedule_in_reader_zones):
            found.append(
                {
                    "newsletter": newsletter.slug,
                    "schedule": newsletter.schedule_cron,
                    "waves": [wave.as_dict() for wave in shown],
                }
            )
    return found


def last_errors(
    session: Session, *, digest_id: int | None = None, limit: int = LAST_ERRORS
) -> list[dict[str, Any]]:
    """The newest deliveries (of one digest, or of all) that failed, bounced or wait for a
    retry, addresses masked: what `newsletter status` and the dashboards show."""
    query = select(Delivery, Subscriber.email).outerjoin(
        Subscriber, Subscriber.id == Delivery.subscriber_id
    )
    if digest_id is not None:
        query = query.where(Delivery.digest_id == digest_id)
    rows = session.execute(
        query.where(Delivery.last_error.is_not(None), Delivery.status.in_(ERROR_STATUSES))
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "delivery_id": delivery.id,
            "digest_id": delivery.digest_id,
            "status": delivery.status,
            "attempts": delivery.attempts,
            "address": mask_address(email) if email else None,
            # Relays quote the recipient in their replies: masked there too.
            "error": mask_addresses(delivery.last_error or "")[:300],
            "at": delivery.updated_at.isoformat(),
        }
        for delivery, email in rows
    ]


# /readyz asks again at most this often per process: a load balancer polling every second,
# or anyone on the internet, costs one relay connection every few seconds, not one a call.
READINESS_MAX_AGE = 5.0
_readiness_lock = threading.Lock()
_readiness_cache: dict[tuple[str, ...], tuple[float, dict[str, dict[str, Any]]]] = {}


def recent_readiness(
    settings: Settings, *, max_age: float = READINESS_MAX_AGE
) -> dict[str, dict[str, Any]]:
    """readiness(), reused for `max_age` seconds; callers arriving meanwhile wait for one."""
    key = (settings.database_url, settings.broker_url, settings.smtp_relays[0])
    with _readiness_lock:
        cached = _readiness_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        checks = readiness(settings)
        _readiness_cache.clear()  # one deployment per process: keep only the newest
        _readiness_cache[key] = (time.monotonic(), checks)
        return checks


def readiness(settings: Settings) -> dict[str, dict[str, Any]]:
    """Whether this deployment can send now: database, broker, SMTP relay, a worker.

    The checks run side by side, so the answer takes about the slowest one (≤ 2 s).
    """
    checks = {
        "database": _database_answers,
        "broker": lambda: _broker_answers(settings.broker_url),
        "smtp": lambda: _relay_answers(settings.smtp_relays[0]),
        "workers": lambda: _worker_answers(settings),
    }
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = {name: pool.submit(check) for name, check in checks.items()}
        return {name: future.result() for name, future in futures.items()}


# --- brokers -------------------------------------------------------------------------


def _redis_depths(broker_url: str, queues: tuple[str, ...], *, prefix: str) -> list[dict[str, Any]]:
    import redis

    # The broker's keys carry the installation's prefix (kombu's global_keyprefix); the
    # routing keys inside the messages do not.
    unacked_key = prefix + REDIS_UNACKED_KEY

    client = redis.Redis.from_url(
        broker_url, socket_timeout=READINESS_TIMEOUT, socket_connect_timeout=READINESS_TIMEOUT
    )
    try:
        ready: dict[str, int] = {}
        for name in queues:
            keys = [
                prefix + name,
                *(f"{prefix}{name}{REDIS_PRIORITY_SEPARATOR}{p}" for p in REDIS_PRIORITY_STEPS),
            ]
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.llen(key)
            ready[name] = sum(int(n) for n in pipe.execute())
        unacked_total = int(client.hlen(unacked_key))
        by_queue: dict[str, int] | None = None
        if unacked_total <= UNACKED_SCAN_LIMIT:
            by_queue = dict.fromkeys(queues, 0)
            for _, raw in client.hscan_iter(unacked_key, count=500):
                routing_key = _routing_key(raw)
                if routing_key in by_queue:
                    by_queue[routing_key] += 1
    finally:
        client.close()
    depths = []
    for name in queues:
        entry: dict[str, Any] = {"queue": name, "ready": ready[name]}
        if by_queue is None:
            entry["unacked"] = unacked_total if len(queues) == 1 else None
            entry["note"] = f"{unacked_total} unacknowledged in all queues"
        else:
            entry["unacked"] = by_queue[name]
        depths.append(entry)
    return depths


def _routing_key(raw: bytes) -> str | None:
    # kombu stores [message, exchange, routing_key]; the routing key names the queue here.
    try:
        value = json.loads(raw)
        return str(value[2])
    except (ValueError, IndexError, TypeError):
        return None


def _sqlalchemy_depths(database_url: str, queues: tuple[str, ...]) -> list[dict[str, Any]]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        # Opening it would create it: nothing was ever queued on this broker.
        return [{"queue": name, "ready": 0, "unacked": None} for name in queues]
    engine = create_engine(url, connect_args=_connect_args(database_url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT q.name, COUNT(m.id) FROM kombu_queue q "
                    "LEFT JOIN kombu_message m ON m.queue_id = q.id AND m.visible "
                    "GROUP BY q.name"
                )
            ).all()
    except SQLAlchemyError:
        rows = []  # no table yet: nothing was ever queued
    finally:
        engine.dispose()
    ready = {str(name): int(count) for name, count in rows}
    # kombu's SQL transport keeps taken messages as invisible rows whether acknowledged or
    # not; which are unacknowledged only the worker holding them knows.
    return [
        {
            "queue": name,
            "ready": ready.get(name, 0),
            "unacked": None,
            "note": "unacknowledged messages are known only to the workers on this broker",
        }
        for name in queues
    ]


def _connect_args(url: str) -> dict[str, Any]:
    return {"timeout": READINESS_TIMEOUT} if url.startswith("sqlite") else {}


# --- workers and readiness -----------------------------------------------------------


def _task_summary(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": task.get("id"),
        "name": task.get("name"),
        "args": _args_summary(task.get("args")),
        "started": task.get("time_start"),
    }


def _args_summary(args: Any) -> str:
    """A task's arguments, short and without addresses: lists become their length."""
    if isinstance(args, str):  # some Celery versions send the repr
        return mask_addresses(args)[:80]
    if not isinstance(args, list | tuple):
        return ""
    parts = []
    for arg in args:
        if isinstance(arg, list | tuple):
            parts.append(f"[{len(arg)} items]")
        elif isinstance(arg, int | float | bool) or arg is None:
            parts.append(repr(arg))
        else:
            value = mask_addresses(str(arg))
            parts.append(repr(value if len(value) <= 40 else value[:40] + "…"))
    return ", ".join(parts)


def _database_answers() -> dict[str, Any]:
    try:
        with db.session_scope() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}
    return {"ok": True}


def _broker_answers(broker_url: str) -> dict[str, Any]:
    from kombu.connection import Connection

    try:
        with Connection(  # type: ignore[no-untyped-call]
            broker_url, connect_timeout=READINESS_TIMEOUT
        ) as connection:
            connection.ensure_connection(max_retries=1, timeout=READINESS_TIMEOUT)
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}
    return {"ok": True}


def _relay_answers(relay_url: str) -> dict[str, Any]:
    """TCP connect and EHLO to the relay: it is there and speaks SMTP (no AUTH, no mail)."""
    parts = urlsplit(relay_url)
    host = parts.hostname or "localhost"
    implicit_tls = parts.scheme == "smtps"
    port = parts.port or (465 if implicit_tls else 25)
    where = {"relay": f"{host}:{port}"}
    try:
        smtp: smtplib.SMTP = (
            smtplib.SMTP_SSL(
                host, port, timeout=READINESS_TIMEOUT, context=ssl.create_default_context()
            )
            if implicit_tls
            else smtplib.SMTP(host, port, timeout=READINESS_TIMEOUT)
        )
        try:
            code, _ = smtp.ehlo()
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
    except (OSError, smtplib.SMTPException) as exc:
        return {"ok": False, **where, "error": _error(exc)}
    if code != 250:
        return {"ok": False, **where, "error": f"EHLO answered {code}"}
    return {"ok": True, **where}


def _worker_answers(settings: Settings) -> dict[str, Any]:
    """At least one worker's heartbeat is recent (the same answer as `newsletter status`)."""
    try:
        with db.session_scope() as session:
            online = [
                w.name
                for w in worker_registry.workers(
                    session, lost_after=timedelta(seconds=settings.worker_lost_seconds)
                )
                if w.online
            ]
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}
    if not online:
        return {
            "ok": False,
            "error": f"no worker's heartbeat in the last {settings.worker_lost_seconds:g} s",
        }
    return {"ok": True, "workers": online}


def _error(exc: BaseException) -> str:
    detail = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {detail[0][:200]}" if detail else type(exc).__name__
