"""A worker's heartbeat: its main process says it is alive, every few seconds, in the database.

Written from the main process, on a thread of its own, not by the pool's tasks: a task busy
with a slow relay does not stop it, so a slow worker is never taken for lost; a machine that
loses power stops it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from newsletter.core import db
from newsletter.core.config import Settings
from newsletter.sending import workers

log = logging.getLogger("newsletter.worker")


class Heartbeat:
    """Registers the worker, then beats on a thread until stop()."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        concurrency: int,
        load: Callable[[], tuple[int, int]],
    ) -> None:
        self.every = settings.worker_heartbeat_seconds
        self.name = name
        self.concurrency = concurrency
        self.load = load  # (tasks running now, tasks run since the start)
        self.instance = workers.instance()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="newsletter-heartbeat", daemon=True)

    def start(self) -> None:
        try:
            self._register()
        except Exception as exc:
            # The database not up yet, or its schema not upgraded yet (web runs `init`
            # beside this start): the beats register as soon as they can.
            log.warning("worker not registered yet (%s); the heartbeat will", type(exc).__name__)
        self._thread.start()
        log.info("worker %s (instance %s) on duty", self.name, self.instance)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.every + 5)
        try:
            with db.session_scope() as session:
                workers.stopped(session, instance_id=self.instance)
        except Exception as exc:  # the database is gone too: the worker will read as lost
            log.warning("could not record the worker's stop: %s", type(exc).__name__)

    def _register(self) -> None:
        with db.session_scope() as session:
            workers.register(
                session,
                instance_id=self.instance,
                name=self.name,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                concurrency=self.concurrency,
            )

    def beat(self) -> None:
        active, processed = self.load()
        with db.session_scope() as session:
            alive = workers.heartbeat(
                session, instance_id=self.instance, active=active, processed=processed
            )
        if not alive:  # the row is gone (a database restored from a backup): again
            self._register()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
            except Exception as exc:
                # The database restarting: the next beat tries again. Silent for long,
                # this worker is taken for lost, and its work is sent by the others.
                log.warning("heartbeat not written: %s", type(exc).__name__)
