"""How many signups one client address and one mailbox may make in an hour, and how many
confirmation emails one mailbox may be sent in a day.

Counted in Redis when the broker is Redis, so that every web process and every worker
shares one count; per process otherwise (the embedded setup runs one web process). The
signup counts are taken before anything is asked about the address, and every attempt
counts, known address or not: whether a signup is refused says nothing about who is
subscribed. A mailbox is counted whatever the spelling of its address (plus tags and case
folded, see mailbox()): `alice+1@`, `alice+2@` … all fill one inbox.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
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
CONFIRMATION_WINDOW_SECONDS = 24 * 3600
KEY_PREFIX = "nl:signup"
# Mail providers that ignore dots in the local part, and their other domain name.
DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}
# One IPv6 client usually holds a whole /64: its addresses are counted as one.
IPV6_CLIENT_PREFIX = 64


@dataclass(frozen=True)
class SignupLimited:
    """A signup over its hourly allowance: which one, and when the window turns."""

    by: str  # "ip" | "address"
    retry_after: int


def mailbox(email: str) -> str:
    """The mailbox an address delivers to, as a key: `Alice+news@Example.com` and
    `alice@example.com` are one mailbox (plus tag and case folded; Gmail's dots too).

    InvalidInput for an address that is not valid.
    """
    _, key = clean_email(email)
    local, _, domain = key.rpartition("@")
    # An address that is all tag ("+news@…") is a mailbox of its own name.
    local = local.split("+", 1)[0] or local
    if domain in DOTLESS_DOMAINS:
        local, domain = local.replace(".", "") or local, DOTLESS_DOMAINS[domain]
    return f"{local}@{domain}"


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
        checks.append(("ip", _client(ip), settings.signup_limit_per_ip_per_hour))
    if settings.signup_limit_per_address_per_hour:
        try:
            address_key = mailbox(email)
        except InvalidInput:
            address_key = None
        if address_key:
            checks.append(("address", address_key, settings.signup_limit_per_address_per_hour))
    for kind, value, limit in checks:
        # Keys carry a keyed hash, never an address: Redis holds no reader's data.
        key = f"{KEY_PREFIX}:{kind}:{window}:{_hashed(settings.secret_key, value)}"
        if _count(settings, key, WINDOW_SECONDS) > limit:
            return SignupLimited(kind, retry_after)
    return None


def may_send_confirmation(settings: Settings, *, email: str) -> bool:
    """Count one confirmation email to this address's mailbox; False when that would be
    more than NEWSLETTER_CONFIRMATIONS_PER_MAILBOX_PER_DAY (0: no limit).

    Asked only when a confirmation is due, so a signup that sends nothing uses nothing of
    the mailbox's allowance.
    """
    limit = settings.confirmations_per_mailbox_per_day
    if not limit:
        return True
    window = int(time.time() // CONFIRMATION_WINDOW_SECONDS)
    hashed = _hashed(settings.secret_key, mailbox(email))
    key = f"{KEY_PREFIX}:mailbox:{window}:{hashed}"
    return _count(settings, key, CONFIRMATION_WINDOW_SECONDS) <= limit


def _client(ip: str) -> str:
    """The client a signup is counted for: its address, or its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # not an IP address (a test client's name, a Unix socket): as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


def _count(settings: Settings, key: str, window_seconds: int) -> int:
    if not settings.uses_redis:
        return _local.incr(key, expires=time.time() + window_seconds)
    key = settings.redis_key_prefix + key
    try:
        with _redis(settings.broker_url).pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, window_seconds + 60)
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
        self._counts: dict[str, tuple[int, float]] = {}  # key: (count, expires at)
        self._lock = threading.Lock()

    def incr(self, key: str, *, expires: float) -> int:
        with self._lock:
            if len(self._counts) >= self.MAX_KEYS:
                # Windows that are over go first, then (a flood) all.
                now = time.time()
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
                if len(self._counts) >= self.MAX_KEYS:
                    self._counts.clear()
            count, _ = self._counts.get(key, (0, expires))
            self._counts[key] = (count + 1, expires)
            return count + 1

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


_local = _LocalCounts()
