"""The parts of sending that need no worker: rate limits in Redis, relays in turn, backoff."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections import Counter

import pytest

from newsletter.core.config import Settings
from newsletter.sending.ratelimit import LocalRateLimiter, RateLimited, RedisRateLimiter
from newsletter.sending.relays import RetryPolicy, backoff, relay_for_batch, relay_for_notice
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


def test_relays_are_used_in_turn_batch_by_batch() -> None:
    settings = Settings(smtp_url="smtp://a.example:587, smtps://b.example:465", batch_size=500)
    assert settings.smtp_relays == ["smtp://a.example:587", "smtps://b.example:465"]
    chosen = [relay_for_batch(settings, [first]) for first in (1, 501, 1001, 1501)]
    assert chosen == [
        "smtp://a.example:587",
        "smtps://b.example:465",
        "smtp://a.example:587",
        "smtps://b.example:465",
    ]


def test_notices_use_every_relay_and_a_retry_goes_to_the_next_one() -> None:
    settings = Settings(smtp_url="smtp://a.example:587,smtp://b.example:587")
    first_tries = {relay_for_notice(settings, subscriber_id=n, attempt=0) for n in range(4)}
    assert first_tries == {"smtp://a.example:587", "smtp://b.example:587"}
    for subscriber_id in range(4):
        tries = [relay_for_notice(settings, subscriber_id=subscriber_id, attempt=a) for a in (0, 1)]
        assert tries[0] != tries[1]


def test_backoff_grows_is_capped_and_jittered() -> None:
    delays = [backoff(n, base=30, cap=900) for n in range(8)]
    assert 22.5 <= delays[0] <= 37.5
    assert 45 <= delays[1] <= 75
    assert all(d <= 900 * 1.25 for d in delays)
    assert len({round(backoff(3, base=30, cap=900), 6) for _ in range(20)}) > 1
    # A batch retried without end (its task has no retry cap) still gets a number.
    assert backoff(5000, base=30, cap=900) <= 900 * 1.25


def test_the_retry_policy_reads_its_settings() -> None:
    policy = RetryPolicy.from_settings(
        Settings(retry_base_seconds=10, retry_max_seconds=40, max_attempts=3)
    )
    assert [policy.may_retry(attempts=n) for n in (1, 2, 3)] == [True, True, False]
    assert 7.5 <= policy.delay(retries=0) <= 12.5
    assert policy.delay(retries=10) <= 40 * 1.25
