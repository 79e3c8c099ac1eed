"""Which relay a message goes through and when a message put off is tried again: one choice
and one retry policy for a digest's batches and for single notices alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.core.config import Settings
from newsletter.sending.relays import (
    RetryPolicy,
    backoff,
    choose_relay,
    relay_for_batch,
    relay_for_notice,
)


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


def test_with_no_relay_configured_nothing_is_chosen() -> None:
    with pytest.raises(ValueError, match="no SMTP relay is configured"):
        choose_relay([], turn=0)


def test_one_relay_takes_every_batch_and_every_notice() -> None:
    settings = Settings(smtp_url="smtp://only.example:587", batch_size=500)
    batches = {relay_for_batch(settings, [first]) for first in (1, 501, 1001)}
    notices = {
        relay_for_notice(settings, subscriber_id=n, attempt=a) for n in range(3) for a in range(3)
    }
    assert batches == notices == {"smtp://only.example:587"}


def test_a_notice_put_off_again_and_again_goes_round_the_relays_in_order() -> None:
    settings = Settings(smtp_url="smtp://a.example,smtp://b.example,smtp://c.example")
    tries = [relay_for_notice(settings, subscriber_id=4, attempt=a) for a in range(4)]
    # Reader 4 starts on the second relay (4 % 3), then each retry takes the next one.
    assert tries == ["smtp://b.example", "smtp://c.example", "smtp://a.example", "smtp://b.example"]


@pytest.mark.parametrize(("retries", "unjittered"), [(0, 10), (1, 20), (2, 40), (3, 80), (4, 100)])
def test_each_retry_waits_twice_as_long_until_the_cap(retries: int, unjittered: float) -> None:
    policy = RetryPolicy(base_seconds=10, max_seconds=100, max_attempts=8)
    delays = [policy.delay(retries=retries) for _ in range(50)]
    # Jitter of a quarter either way, so that many senders put off together spread out.
    assert all(0.75 * unjittered <= d <= 1.25 * unjittered for d in delays)


def test_a_batch_retry_never_waits_as_long_as_the_brokers_visibility_timeout(
    tmp_path: Path,
) -> None:
    """Redis hands a message held past the visibility timeout to another worker: a retry
    waiting that long would run twice. An hourly quota's wait is cut below it."""
    from newsletter.sending.relays import batch_retry_in

    settings = Settings(var_dir=tmp_path, broker_visibility_timeout=600, retry_max_seconds=60)
    assert batch_retry_in(settings, wait=3000.0, retries=0) == pytest.approx(540.0)
    assert batch_retry_in(settings, wait=120.0, retries=0) == 120.0
    assert 0 < batch_retry_in(settings, wait=None, retries=10) <= 75.0  # the backoff, capped
