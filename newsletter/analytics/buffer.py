"""Where clicks and opens wait to be written: Redis, or a file under var/ by default.

The redirect appends one line and answers; nothing on its path writes to the database.
The beat drains the buffer in bulk (analytics/recording.py) and may give back the hits
it is not ready to judge yet.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from newsletter.analytics.hits import Hit
from newsletter.core.config import Settings

log = logging.getLogger("newsletter.analytics")
# Hits kept in a web process's memory while the shared buffer cannot be reached.
MAX_WAITING_IN_MEMORY = 100_000


class HitBuffer(Protocol):
    def add(self, hit: Hit) -> None: ...

    def drain(self) -> list[Hit]: ...

    def give_back(self, hits: Iterable[Hit]) -> None: ...


class RedisHitBuffer:
    """One Redis list shared by every web process and machine."""

    def __init__(self, url: str, *, key: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.key = key

    def add(self, hit: Hit) -> None:
        self.client.rpush(self.key, hit.dumps())

    def drain(self) -> list[Hit]:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.lrange(self.key, 0, -1)
            pipe.delete(self.key)
            lines, _ = pipe.execute()
        return [hit for hit in map(Hit.loads, lines) if hit is not None]

    def give_back(self, hits: Iterable[Hit]) -> None:
        lines = [hit.dumps() for hit in hits]
        if lines:
            self.client.rpush(self.key, *lines)


class FileHitBuffer:
    """One file of JSON lines under var/, for the embedded default: every process on the
    machine appends to it under a lock, and the drain takes the file whole."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, hit: Hit) -> None:
        self._append([hit.dumps()])

    def give_back(self, hits: Iterable[Hit]) -> None:
        lines = [hit.dumps() for hit in hits]
        if lines:
            self._append(lines)

    def drain(self) -> list[Hit]:
        # A name of its own: two drains at once never take each other's file.
        draining = self.path.with_name(f"{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.replace(self.path, draining)
        except FileNotFoundError:
            return []
        with draining.open("rb") as file:
            # A writer that opened the file before it was moved finishes its line first,
            # then finds the file moved and writes to the new one (_append).
            fcntl.flock(file, fcntl.LOCK_EX)
            lines = file.read().splitlines()
            draining.unlink()
        return [hit for hit in map(Hit.loads, lines) if hit is not None]

    def _append(self, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(self.path).st_ino
                except FileNotFoundError:
                    current = None
                if current == os.fstat(fd).st_ino:
                    os.write(fd, data)
                    return
            finally:
                os.close(fd)  # closing releases the lock


class BatchingHitBuffer:
    """A web process's hits gathered in memory and handed to the shared buffer a few
    times a second, in one write: a click costs no round trip. A process killed loses at
    most the last fraction of a second's hits (never a reader's redirect)."""

    def __init__(self, shared: HitBuffer, *, seconds: float = 0.25, most: int = 500) -> None:
        self.shared = shared
        self.seconds = seconds
        self.most = most
        self._waiting: list[Hit] = []
        self._lock = threading.Lock()
        self._handing = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="link-hits", daemon=True)
        self._thread.start()

    def add(self, hit: Hit) -> None:
        with self._lock:
            self._waiting.append(hit)
            full = len(self._waiting) >= self.most
        if full:
            self._wake.set()

    def drain(self) -> list[Hit]:
        return self.shared.drain()

    def give_back(self, hits: Iterable[Hit]) -> None:
        self.shared.give_back(hits)

    def flush(self) -> None:
        """Hand what waits to the shared buffer; once this returns, every hit added before
        it was called is there (a flush under way elsewhere is waited for)."""
        with self._handing:
            with self._lock:
                hits, self._waiting = self._waiting, []
            if not hits:
                return
            try:
                self.shared.give_back(hits)
            except Exception as exc:  # the shared buffer is away: keep them for next time
                log.warning("%d link hits wait in memory: %s", len(hits), type(exc).__name__)
                with self._lock:
                    self._waiting[:0] = hits[-MAX_WAITING_IN_MEMORY:]

    def close(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self.seconds)
            self._wake.clear()
            self.flush()


def hit_buffer(settings: Settings) -> HitBuffer:
    """The buffer of this installation: Redis when the broker is Redis, else the file."""
    if settings.uses_redis:
        return RedisHitBuffer(settings.broker_url, key=f"{settings.redis_key_prefix}nl:link-hits")
    return FileHitBuffer(settings.var_dir / "link-hits.jsonl")
