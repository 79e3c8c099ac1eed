"""Every Redis key the service uses starts with NEWSLETTER_REDIS_KEY_PREFIX (the tests set one)."""

from __future__ import annotations

import uuid

import redis

from newsletter.app.queue import celery as app
from newsletter.core.config import get_settings
from newsletter.ops import monitoring
from newsletter.subscribers import signup_limits


def test_a_queued_task_waits_under_the_prefix_where_the_status_finds_it(redis_broker: str) -> None:
    settings = get_settings()
    assert settings.redis_key_prefix
    queue = f"prefix-check-{uuid.uuid4().hex[:8]}"
    app.send_task("newsletter.tick", queue=queue)
    with redis.Redis.from_url(redis_broker) as store:
        assert store.llen(settings.redis_key_prefix + queue) == 1
        assert not store.exists(queue)
    [depth] = monitoring.queue_depths(settings.broker_url, (queue,))
    assert depth["ready"] == 1 and depth["unacked"] == 0


def test_signup_counts_are_kept_under_the_prefix(redis_broker: str) -> None:
    settings = get_settings()
    assert settings.uses_redis
    counted = f"{settings.redis_key_prefix}{signup_limits.KEY_PREFIX}:*"
    unprefixed = f"{signup_limits.KEY_PREFIX}:*"
    with redis.Redis.from_url(redis_broker) as store:
        before, before_bare = len(store.keys(counted)), len(store.keys(unprefixed))
        address = f"prefix-{uuid.uuid4().hex[:8]}@example.com"
        assert signup_limits.check_signup(settings, ip="198.51.100.77", email=address) is None
        # One key for the client address (perhaps counted before), one for the new address.
        assert len(store.keys(counted)) > before
        assert len(store.keys(unprefixed)) == before_bare
