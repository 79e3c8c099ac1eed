"""The workers on duty: each one's heartbeat, who is online, and who was lost.

A worker (one `newsletter worker`: a main process and its pool) registers as it starts,
writes a heartbeat every NEWSLETTER_WORKER_HEARTBEAT_SECONDS from its main process, and
says so when it stops cleanly. Whoever asks whether workers are online (`newsletter
status`, the dashboard, /readyz) reads this one table, whatever the broker. A worker silent
for NEWSLETTER_WORKER_LOST_SECONDS is lost — its machine lost power, its process group was
killed — and the sweeper gives what it held to the others (sending.ledger.reclaim).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from newsletter.core.clock import utcnow
from newsletter.core.models import Worker

# A lost worker's row is kept this long after it was reclaimed, for the operator's view.
FORGET_AFTER = timedelta(days=7)
# How long a lost worker is still shown (as lost) by `newsletter status` and the dashboard.
SHOW_LOST_FOR = timedelta(hours=1)

_instance: str | None = None


def new_instance() -> str:
    """A fresh instance id for this process and the pool it will fork (at a worker's start)."""
    global _instance
    _instance = secrets.token_hex(6)
    return _instance


def instance() -> str:
    """This process's instance id (inherited from the worker's main process by its pool)."""
    return _instance or new_instance()


def claimant(task_id: str) -> str:
    """Who holds a delivery: the worker instance and the task, `<instance>|<task id>`.

    The instance lets the sweeper find what a lost worker held; the task lets the same
    task run again (a retry, a redelivery) take back what it held itself.
    """
    return f"{instance()}|{task_id}"


def task_of(holder: str) -> str:
    """The task part of a claimant (the whole string for one without an instance)."""
    return holder.rpartition("|")[2]


@dataclass(frozen=True)
class WorkerView:
    """One worker as the operator sees it."""

    id: str
    name: str
    hostname: str
    pid: int
    concurrency: int
    active: int
    processed: int
    started_at: datetime
    seen_at: datetime
    online: bool
    state: str  # "online", "stopped" or "lost"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "hostname": self.hostname,
            "pid": self.pid,
            "concurrency": self.concurrency,
            "active": self.active,
            "processed": self.processed,
            "started_at": self.started_at.isoformat(),
            "seen_at": self.seen_at.isoformat(),
            "online": self.online,
            "state": self.state,
        }


def register(
    session: Session,
    *,
    instance_id: str,
    name: str,
    hostname: str,
    pid: int,
    concurrency: int,
    now: datetime | None = None,
) -> None:
    """A worker starts: online from now on."""
    now = now or clock(session)
    session.execute(
        insert(Worker).values(
            id=instance_id,
            name=name[:200],
            hostname=hostname[:200],
            pid=pid,
            concurrency=concurrency,
            active=0,
            processed=0,
            started_at=now,
            seen_at=now,
        )
    )


def heartbeat(
    session: Session, *, instance_id: str, active: int, processed: int, now: datetime | None = None
) -> bool:
    """The worker is alive; False when its row is gone (a restored database): register again.

    A worker taken for lost that speaks again is online again, and what it takes from now
    on is reclaimed again if it is lost again.
    """
    result = session.execute(
        update(Worker)
        .where(Worker.id == instance_id)
        .values(
            seen_at=now or clock(session), active=active, processed=processed, reclaimed_at=None
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def stopped(session: Session, *, instance_id: str, now: datetime | None = None) -> None:
    """A clean stop: not online any more, at once."""
    now = now or clock(session)
    session.execute(
        update(Worker)
        .where(Worker.id == instance_id)
        .values(stopped_at=now, seen_at=now, active=0)
        .execution_options(synchronize_session=False)
    )


def clock(session: Session) -> datetime:
    """Now by the database's clock where it has one (PostgreSQL): every machine's heartbeat
    and every sweep are compared on one clock, however far the machines' own clocks drift.
    SQLite runs on one machine, whose clock is the one clock."""
    if session.get_bind().dialect.name == "postgresql":
        found = session.scalar(select(func.statement_timestamp()))
        if isinstance(found, datetime):
            return found
    return utcnow()


def workers(
    session: Session, *, lost_after: timedelta, now: datetime | None = None
) -> list[WorkerView]:
    """The workers online, then those stopped or lost within the last hour."""
    now = now or clock(session)
    rows = session.scalars(
        select(Worker).where(Worker.seen_at >= now - SHOW_LOST_FOR).order_by(Worker.name)
    ).all()
    online_now = set(online_ids(session, lost_after=lost_after, now=now))
    views = []
    for row in rows:
        online = row.id in online_now
        state = "online" if online else ("stopped" if row.stopped_at else "lost")
        views.append(
            WorkerView(
                id=row.id,
                name=row.name,
                hostname=row.hostname,
                pid=row.pid,
                concurrency=row.concurrency,
                active=row.active if online else 0,
                processed=row.processed,
                started_at=row.started_at,
                seen_at=row.seen_at,
                online=online,
                state=state,
            )
        )
    return sorted(views, key=lambda view: (not view.online, view.name, view.started_at))


def lost(session: Session, *, lost_after: timedelta, now: datetime | None = None) -> list[str]:
    """Instances stopped or silent for lost_after whose holdings were not yet given back.

    None while no worker at all is online: every heartbeat silent at once is the database
    coming back from an outage (the beats resume within seconds), not every machine lost —
    and were they all lost, nobody would be there to send what they held.
    """
    now = now or clock(session)
    if not online_ids(session, lost_after=lost_after, now=now):
        return []
    return list(
        session.scalars(
            select(Worker.id).where(
                Worker.reclaimed_at.is_(None),
                or_(Worker.stopped_at.is_not(None), Worker.seen_at < now - lost_after),
            )
        )
    )


def online_ids(session: Session, *, lost_after: timedelta, now: datetime) -> list[str]:
    """The one rule of who is online: not stopped, and heard from within lost_after."""
    return list(
        session.scalars(
            select(Worker.id).where(Worker.stopped_at.is_(None), Worker.seen_at >= now - lost_after)
        )
    )


def reclaimed(session: Session, instance_ids: list[str], *, now: datetime | None = None) -> None:
    """What these instances held was given back; and rows of long-gone workers deleted."""
    now = now or clock(session)
    if instance_ids:
        session.execute(
            update(Worker)
            .where(Worker.id.in_(instance_ids))
            .values(reclaimed_at=now)
            .execution_options(synchronize_session=False)
        )
    session.execute(
        delete(Worker)
        .where(Worker.reclaimed_at.is_not(None), Worker.seen_at < now - FORGET_AFTER)
        .execution_options(synchronize_session=False)
    )
