"""The unit of work: a session, and the jobs handed to the queue once its work is committed.

Commit, then enqueue, in this one place. A job sent before the commit could reach a worker
before the rows it names exist; a job for work that was rolled back would act on something
that never happened. So the service functions of app/ collect their jobs here, commit, and
only then are the jobs sent; a rollback forgets them. (Warehouse sends its tasks from an
after-commit hook; Cosmic Python's unit of work hands its events on after commit.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from sqlalchemy.orm import Session

from newsletter.app.jobs import Job
from newsletter.app.queue import CeleryQueue
from newsletter.core import db

log = logging.getLogger("newsletter.app")


class Queue(Protocol):
    """Where jobs go: the Celery broker (app.queue.CeleryQueue), or a fake in tests."""

    def send(self, job: Job) -> None: ...


class UnitOfWork:
    """A session and the jobs waiting for its commit."""

    def __init__(self, session: Session, queue: Queue) -> None:
        self.session = session
        self.queue = queue
        self._jobs: list[Job] = []

    @property
    def jobs(self) -> tuple[Job, ...]:
        """The jobs that the next commit will hand to the queue."""
        return tuple(self._jobs)

    def enqueue(self, job: Job) -> None:
        """Hand this job to the queue once the work is committed, and not before."""
        self._jobs.append(job)

    def commit(self) -> None:
        """Commit; then, and only if that succeeded, send the jobs in the order given.

        A job that the broker refuses raises (the work stays committed; the sweeper and
        the beat take up what a lost job was for), except a nudge, which is only logged.
        """
        self.session.commit()
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            send(self.queue, job)

    def rollback(self) -> None:
        """Undo the work and forget its jobs: none of them is ever sent."""
        self._jobs.clear()
        self.session.rollback()


def send(queue: Queue, job: Job) -> None:
    """Send one job now: for a job that follows no database work (a message received)."""
    if not job.nudge:
        queue.send(job)
        return
    try:
        queue.send(job)
    except Exception as exc:  # the broker is down: the beat does the same a moment later
        log.warning("could not queue %s (%s); the beat will do it", job.task, type(exc).__name__)


@contextmanager
def unit_of_work(queue: Queue | None = None) -> Iterator[UnitOfWork]:
    """A unit of work on a new session of the configured database, for commands and tasks.

    Work not committed when the block ends is dropped, with its jobs. The queue defaults
    to the Celery app's, which the caller has configured (app.queue.configure).
    """
    session = db.new_session()
    work = UnitOfWork(session, queue if queue is not None else CeleryQueue())
    try:
        yield work
    finally:
        # Closing rolls back what was not committed; what was stays readable, detached.
        work._jobs.clear()
        session.close()
