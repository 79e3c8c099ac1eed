"""How many signups one client address, and one email address, may make in an hour.

Counted in Redis when the broker is Redis, so that every web process shares one count;
per process otherwise (the embedded setup runs one web process). The counts are taken
before the subscriber store is asked anything, and every attempt counts, known address
or not: whether a signup is refused says nothing about who is subscribed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import redis

from newsletter.core.config import Settings
from newsletter.core.validation import InvalidInput, clean_email

log = logging.getLogger("newsletter.signup_limits")

WINDOW_SECONDS = 3600
KEY_PREFIX = "nl:signup"


@dataclass(frozen=True)
class SignupLimited:
    """A signup over its hourly allowance: which one, and when the window turns."""

    by: str  # "ip" | "address"
    retry_after: int


def check_signup(settings: Settings, *, ip: str | None, email: str) -> SignupLimited | None:
    """Count this signup attempt; None when it may go ahead.

    A limit of 0 counts nothing. An address that is not valid is not counted per address
    (the signup is refused as invalid anyway); it still counts for its client address.
    """
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    retry_after = max(1, int(WINDOW_SECONDS - now % WINDOW_SECONDS))
    checks: list[tuple[str, str, int]] = []
    if settings.signup_limit_per_ip_per_hour and ip:
        checks.append(("ip", ip, settings.signup_limit_per_ip_per_hour))
    if settings.signup_limit_per_address_per_hour:
        try:
            address_key = clean_email(email)[1]
        except InvalidInput:
            address_key = None
        if address_key:
            checks.append(("address", address_key, settings.signup_limit_per_address_per_hour))
    for kind, value, limit in checks:
        # Keys carry a keyed hash, never an address: Redis holds no reader's data.
        key = f"{KEY_PREFIX}:{kind}:{window}:{_hashed(settings.secret_key, value)}"
        if _count(settings, key) > limit:
            return SignupLimited(kind, retry_after)
    return None


def _count(settings: Settings, key: str) -> int:
    if not settings.uses_redis:
        return _local.incr(key)
    key = settings.redis_key_prefix + key
    try:
        with _redis(settings.broker_url).pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS + 60)
            count, _ = pipe.execute()
        return int(count)
    except redis.RedisError:
        # A limit is a defence, not a gate: with Redis down, signups still go through.
        log.warning("signup limits are not counted: Redis does not answer", exc_info=True)
        return 0


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _hashed(secret_key: str, value: str) -> str:
    return hmac.new(secret_key.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


class _LocalCounts:
    """The same fixed windows in this process, for the embedded broker that has no Redis."""

    MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def incr(self, key: str) -> int:
        with self._lock:
            if len(self._counts) >= self.MAX_KEYS:
                # Keys name their window: the old windows' go first, then (a flood) all.
                current = key.split(":")[3]
                self._counts = {k: v for k, v in self._counts.items() if k.split(":")[3] == current}
                if len(self._counts) >= self.MAX_KEYS:
                    self._counts.clear()
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


_local = _LocalCounts()
