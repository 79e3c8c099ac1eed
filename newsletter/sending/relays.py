"""Which relay a message goes through, and when a message a relay put off is tried again.

One choice and one retry policy for every message, a digest's batch or a single notice:
NEWSLETTER_SMTP_URL may list several relays, comma-separated, and they take turns;
a temporary failure (4xx, a dropped or refused connection) is tried again after an
exponential backoff with jitter, up to NEWSLETTER_MAX_ATTEMPTS attempts in all.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.core.config import Settings


def choose_relay(relays: Sequence[str], *, turn: int) -> str:
    """Several relays share the load: consecutive turns go to them in order."""
    if not relays:
        raise ValueError("no SMTP relay is configured")
    return relays[turn % len(relays)]


def relay_for_batch(settings: Settings, delivery_ids: Sequence[int]) -> str:
    """A digest's batches go to the relays in turn, batch by batch."""
    return choose_relay(settings.smtp_relays, turn=delivery_ids[0] // max(1, settings.batch_size))


def relay_for_notice(settings: Settings, *, subscriber_id: int, attempt: int) -> str:
    """Notices spread over the relays by reader; a retry goes to the next relay.

    `attempt` counts from 0: a relay that is down delays a confirmation by one backoff,
    not by all of them.
    """
    return choose_relay(settings.smtp_relays, turn=subscriber_id + attempt)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before trying again, and how many attempts a message gets."""

    base_seconds: float
    max_seconds: float
    max_attempts: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            max_attempts=settings.max_attempts,
        )

    def may_retry(self, *, attempts: int) -> bool:
        """Whether a message tried `attempts` times (and put off each time) gets another."""
        return attempts < self.max_attempts

    def delay(self, *, retries: int) -> float:
        """Seconds to wait before retry number `retries` + 1."""
        return backoff(retries, base=self.base_seconds, cap=self.max_seconds)


def batch_retry_in(settings: Settings, *, wait: float | None, retries: int) -> float:
    """Seconds before a batch put off is tried again: the relay's quota window, or the
    backoff; never as long as the broker's visibility timeout, past which Redis would hand
    the retry waiting in a worker to a second worker as well (the countdown trap)."""
    countdown = wait or RetryPolicy.from_settings(settings).delay(retries=retries)
    return min(countdown, VISIBILITY_SHARE * settings.broker_visibility_timeout)


# A retry's countdown stays under this share of the visibility timeout.
VISIBILITY_SHARE = 0.9


def backoff(retries: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter, so that retries from many senders spread out."""
    # The exponent is bounded: a batch retried without end must not overflow a float.
    delay = min(cap, base * 2.0 ** min(retries, 60))
    return float(delay * random.uniform(0.75, 1.25))
