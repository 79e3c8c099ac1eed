"""Schedules: when a cron schedule is due on each newsletter's own clock, and what one may be.

Planning the digests those due times make, once however many schedulers tick, is tested
on SQLite and PostgreSQL in tests/integration/test_schedules.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsletter.core.validation import InvalidInput
from newsletter.digests import schedules


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- due times, on each newsletter's clock -------------------------------------------


def test_seven_in_the_morning_in_macau_is_eleven_at_night_utc_the_day_before() -> None:
    now = utc(2026, 11, 26, 12, 0)

    assert schedules.latest_due("0 7 * * *", "Asia/Macau", now) == utc(2026, 11, 25, 23, 0)
    assert schedules.next_due("0 7 * * *", "Asia/Macau", now) == utc(2026, 11, 26, 23, 0)


@pytest.mark.parametrize(
    ("now", "due"),
    [
        # Winter time (WET, UTC+0) until the clocks jump on Sunday 29 March 2026 ...
        (utc(2026, 3, 28, 12), utc(2026, 3, 28, 7)),
        # ... summer time (WEST, UTC+1) from that very morning ...
        (utc(2026, 3, 29, 12), utc(2026, 3, 29, 6)),
        (utc(2026, 10, 24, 12), utc(2026, 10, 24, 6)),
        # ... and winter time again from Sunday 25 October 2026.
        (utc(2026, 10, 25, 12), utc(2026, 10, 25, 7)),
    ],
)
def test_lisbon_digests_keep_seven_oclock_across_the_clock_changes(
    now: datetime, due: datetime
) -> None:
    assert schedules.latest_due("0 7 * * *", "Europe/Lisbon", now) == due
    assert schedules.next_due("0 7 * * *", "Europe/Lisbon", due - timedelta(seconds=1)) == due


def test_a_due_time_the_clocks_skip_comes_at_the_jump() -> None:
    # On 29 March 2026 Lisbon's clocks go from 01:00 straight to 02:00 (01:00 UTC).
    assert schedules.latest_due("30 1 * * *", "Europe/Lisbon", utc(2026, 3, 28, 12)) == utc(
        2026, 3, 28, 1, 30
    )
    assert schedules.latest_due("30 1 * * *", "Europe/Lisbon", utc(2026, 3, 29, 12)) == utc(
        2026, 3, 29, 1, 0
    )
    assert schedules.latest_due("30 1 * * *", "Europe/Lisbon", utc(2026, 3, 30, 12)) == utc(
        2026, 3, 30, 0, 30
    )


def test_a_due_time_the_clocks_repeat_comes_once() -> None:
    # On 25 October 2026 Lisbon lives 01:00-02:00 twice: at 00:00 and at 01:00 UTC.
    first = utc(2026, 10, 25, 0, 30)
    in_the_repeated_hour = utc(2026, 10, 25, 1, 45)

    assert schedules.latest_due("30 1 * * *", "Europe/Lisbon", in_the_repeated_hour) == first
    assert schedules.next_due("30 1 * * *", "Europe/Lisbon", first) == utc(2026, 10, 26, 1, 30)


def test_sao_paulo_today_and_in_its_daylight_saving_years() -> None:
    # No daylight saving since 2019: 07:00 is 10:00 UTC all year.
    assert schedules.latest_due("0 7 * * *", "America/Sao_Paulo", utc(2026, 1, 15, 12)) == utc(
        2026, 1, 15, 10
    )
    assert schedules.latest_due("0 7 * * *", "America/Sao_Paulo", utc(2026, 7, 15, 12)) == utc(
        2026, 7, 15, 10
    )
    # 4 November 2018: midnight never happened, the clocks went to 01:00 (03:00 UTC).
    assert schedules.next_due("0 0 * * *", "America/Sao_Paulo", utc(2018, 11, 3, 12)) == utc(
        2018, 11, 4, 3
    )
    # 16 February 2019: 23:00-24:00 came twice; the digest goes the first time only.
    assert schedules.latest_due("30 23 * * *", "America/Sao_Paulo", utc(2019, 2, 17, 12)) == utc(
        2019, 2, 17, 1, 30
    )
    assert schedules.next_due("30 23 * * *", "America/Sao_Paulo", utc(2019, 2, 17, 1, 30)) == utc(
        2019, 2, 18, 2, 30
    )


def test_latest_due_includes_now_and_next_due_excludes_it() -> None:
    due = utc(2026, 11, 26, 7, 0)

    assert schedules.latest_due("0 7 * * *", "Europe/Lisbon", due) == due
    assert schedules.next_due("0 7 * * *", "Europe/Lisbon", due) == due + timedelta(days=1)


def test_weekday_schedules_skip_the_weekend() -> None:
    saturday = utc(2026, 11, 28, 12)

    assert schedules.latest_due("0 7 * * 1-5", "Europe/Lisbon", saturday) == utc(2026, 11, 27, 7)
    assert schedules.next_due("0 7 * * 1-5", "Europe/Lisbon", saturday) == utc(2026, 11, 30, 7)


def test_due_times_need_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        schedules.latest_due("0 7 * * *", "Europe/Lisbon", datetime(2026, 11, 26, 7))


# --- what a schedule may be ----------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("0 7 * * *", "0 7 * * *"),
        ("  0   7 * *  1-5 ", "0 7 * * 1-5"),
        ("30 6 * jan-mar MON-FRI", "30 6 * jan-mar MON-FRI"),
        ("*/15 * * * *", "*/15 * * * *"),
        ("50,5 * * * *", "50,5 * * * *"),
        ("0 9 L * *", "0 9 L * *"),
        ("0 9 * * 1#1", "0 9 * * 1#1"),
    ],
)
def test_validate_cron_keeps_five_fields_with_single_spaces(typed: str, kept: str) -> None:
    assert schedules.validate_cron(typed) == kept


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("", "Please give a schedule"),
        ("   ", "Please give a schedule"),
        ("0 7 * * * *", "Schedules by the second are not supported"),
        ("0 7 * *", "has 4"),
        ("@daily", "write the five fields"),
        ("0 25 * * *", "hours 0-23"),
        ("every morning", "has 2"),
        ("a b c d e", "minute field 'a'"),
        ("H 7 * * *", "minute field 'H'"),
        ("0 7 * * R", "day-of-week field 'R'"),
        ("0 7 30 2 *", "never comes round"),
        ("0\n7 * * *", "control characters"),
        ("0 7 * * *\x00", "control characters"),
        ("* * * * *", "only 1 minute apart"),
        ("*/5 9 * * 1-5", "only 5 minutes apart"),
        ("0,50 * * * *", "only 10 minutes apart"),
        ("0 " + "1," * 60 + "2 * * *", "too long"),
    ],
)
def test_validate_cron_refuses_with_words(typed: str, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        schedules.validate_cron(typed)

    assert refused.value.field == "schedule"
    assert words in refused.value.message


@pytest.mark.parametrize("name", ["Europe/Lisbon", "Asia/Macau", "America/Sao_Paulo", "UTC"])
def test_validate_time_zone_accepts_iana_names(name: str) -> None:
    assert schedules.validate_time_zone(name) == name


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "Please choose a time zone"),
        ("Mars/Olympus_Mons", "not a time zone we know"),
        ("../../etc/passwd", "not a time zone we know"),
        ("Asia/Macau\n", "control characters"),
    ],
)
def test_validate_time_zone_refuses_with_words(name: str, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        schedules.validate_time_zone(name)

    assert refused.value.field == "time_zone"
    assert words in refused.value.message
