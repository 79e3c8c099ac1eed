"""Where clicks and opens wait to be written: Redis, or a file under var/ by default.

The redirect appends one line and answers; nothing on its path writes to the database.
The beat drains the buffer in bulk (analytics/recording.py) and may give back the hits
it is not ready to judge yet.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from newsletter.analytics.hits import Hit
from newsletter.core.config import Settings


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


def hit_buffer(settings: Settings) -> HitBuffer:
    """The buffer of this installation: Redis when the broker is Redis, else the file."""
    if settings.uses_redis:
        return RedisHitBuffer(settings.broker_url, key=f"{settings.redis_key_prefix}nl:link-hits")
    return FileHitBuffer(settings.var_dir / "link-hits.jsonl")
