"""Rate limits shared through Redis by every sending process (relays and backoff, which need
no service: tests/unit/sending/test_relays.py)."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections import Counter

import pytest

from newsletter.sending.ratelimit import LocalRateLimiter, RateLimited, RedisRateLimiter
from tests.conftest import REDIS_KEY_PREFIX


def _acquire_many(url: str, prefix: str, count: int, stamps: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    limiter = RedisRateLimiter(url, per_second=10, per_hour=0, prefix=prefix)
    for _ in range(count):
        limiter.acquire()
        stamps.put(time.time())


def test_two_processes_share_one_per_second_limit(redis_broker: str) -> None:
    prefix = f"{REDIS_KEY_PREFIX}rate:{uuid.uuid4().hex}"
    stamps: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [
        multiprocessing.Process(target=_acquire_many, args=(redis_broker, prefix, 15, stamps))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    seen = [stamps.get(timeout=5) for _ in range(30)]
    per_second = Counter(int(stamp) for stamp in seen)
    # Each process alone would allow 10 a second; together they still get only 10.
    assert max(per_second.values()) <= 10
    assert len(per_second) >= 3


def test_an_hourly_quota_spent_says_how_long_to_wait(redis_broker: str) -> None:
    limiter = RedisRateLimiter(
        redis_broker, per_second=0, per_hour=3, prefix=f"{REDIS_KEY_PREFIX}rate:{uuid.uuid4().hex}"
    )
    for _ in range(3):
        limiter.acquire()
    with pytest.raises(RateLimited) as caught:
        limiter.acquire()
    assert 0 < caught.value.wait <= 3600
    local = LocalRateLimiter(per_second=0, per_hour=1)
    local.acquire()
    with pytest.raises(RateLimited):
        local.acquire()
