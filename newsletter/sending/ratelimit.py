"""A send rate shared by every worker: per-second and per-hour windows counted in Redis."""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis


class RateLimited(Exception):
    """The hourly quota is spent; try again after `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"hourly quota reached; next window in {wait:.0f} s")
        self.wait = wait


class RateLimiter(Protocol):
    def acquire(self) -> None: ...


class NoLimit:
    def acquire(self) -> None:
        return None


class RedisRateLimiter:
    """Fixed windows in Redis, so several worker machines share one relay's quota.

    Celery's own rate_limit counts per worker process, which lets N workers send N times
    the relay's limit.
    """

    def __init__(
        self, url: str, *, per_second: int, per_hour: int, prefix: str = "nl:rate"
    ) -> None:
        self.client = redis.Redis.from_url(url)
        self.per_second = per_second
        self.per_hour = per_hour
        self.prefix = prefix

    def acquire(self) -> None:
        while True:
            now = time.time()
            second, hour = int(now), int(now // 3600)
            with self.client.pipeline() as pipe:
                pipe.incr(f"{self.prefix}:s:{second}")
                pipe.expire(f"{self.prefix}:s:{second}", 5)
                pipe.incr(f"{self.prefix}:h:{hour}")
                pipe.expire(f"{self.prefix}:h:{hour}", 3700)
                in_second, _, in_hour, _ = pipe.execute()
            if self.per_hour and in_hour > self.per_hour:
                raise RateLimited(3600 - now % 3600)
            if not self.per_second or in_second <= self.per_second:
                return
            # Over this second's share: wait for the next window and ask again.
            time.sleep(max(0.0, second + 1 - time.time()))


class LocalRateLimiter:
    """The same windows in one process, for the embedded broker that has no Redis."""

    def __init__(self, *, per_second: int, per_hour: int) -> None:
        self.per_second = per_second
        self.per_hour = per_hour
        self._lock = threading.Lock()
        self._second = (0, 0)
        self._hour = (0, 0)

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.time()
                second, hour = int(now), int(now // 3600)
                count_s = self._second[1] + 1 if self._second[0] == second else 1
                count_h = self._hour[1] + 1 if self._hour[0] == hour else 1
                if self.per_hour and count_h > self.per_hour:
                    raise RateLimited(3600 - now % 3600)
                if not self.per_second or count_s <= self.per_second:
                    self._second, self._hour = (second, count_s), (hour, count_h)
                    return
            time.sleep(max(0.0, second + 1 - time.time()))
