"""The one clock: what a time typed without a zone means, and an instant on a zone's clock.

Every date in an email and every front end reading a typed time, on that clock, are tested
in tests/integration/test_clock.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from newsletter.core import clock
from newsletter.core.validation import InvalidInput

MACAU = ZoneInfo("Asia/Macau")  # UTC+8 all year: no clock changes to think about


# --- a time without a zone ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        # Without a zone: the newsletter's wall clock.
        ("2026-11-26T07:00", datetime(2026, 11, 25, 23, 0, tzinfo=UTC)),
        ("2026-11-26 07:00", datetime(2026, 11, 25, 23, 0, tzinfo=UTC)),
        ("  2026-11-26T07:00:30  ", datetime(2026, 11, 25, 23, 0, 30, tzinfo=UTC)),
        ("2026-11-26", datetime(2026, 11, 25, 16, 0, tzinfo=UTC)),  # midnight in Macau
        # With a zone or an offset: taken as given.
        ("2026-11-26T07:00Z", datetime(2026, 11, 26, 7, 0, tzinfo=UTC)),
        ("2026-11-26T07:00+00:00", datetime(2026, 11, 26, 7, 0, tzinfo=UTC)),
        ("2026-11-26T07:00-03:00", datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
    ],
)
def test_a_typed_time_is_read_on_the_zones_clock_unless_it_has_its_own(
    typed: str, meant: datetime
) -> None:
    got = clock.to_utc(typed, time_zone="Asia/Macau", field="since")
    assert got == meant and got is not None and got.utcoffset() == timedelta(0)


def test_a_datetime_without_a_zone_is_read_the_same_way_and_an_aware_one_kept() -> None:
    naive = datetime(2026, 11, 26, 7, 0)
    assert clock.to_utc(naive, time_zone=MACAU, field="since") == datetime(
        2026, 11, 25, 23, 0, tzinfo=UTC
    )
    aware = datetime(2026, 11, 26, 7, 0, tzinfo=timezone(timedelta(hours=-3)))
    assert clock.to_utc(aware, time_zone=MACAU, field="since") == aware
    assert clock.to_utc(None, time_zone=MACAU, field="since") is None


def test_a_time_the_clocks_repeat_is_the_first_of_the_two() -> None:
    # Lisbon fell back from 02:00 WEST to 01:00 WET on 25 October 2026: 01:30 came twice.
    got = clock.to_utc("2026-10-25T01:30", time_zone="Europe/Lisbon", field="send_at")
    assert got == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("typed", "time_zone", "words"),
    [
        ("", "Asia/Macau", "Give the sending time"),
        ("   ", "Asia/Macau", "Give the sending time"),
        ("tomorrow at nine", "Asia/Macau", "The sending time is not a date and time"),
        ("2026-13-01T07:00", "Asia/Macau", "The sending time is not a date and time"),
        ("2026-11-26T07:00+25:00", "Asia/Macau", "The sending time is not a date and time"),
        # Lisbon's clocks went from 01:00 to 02:00 on 29 March 2026: 01:30 never happened.
        ("2026-03-29T01:30", "Europe/Lisbon", "2026-03-29 01:30 does not exist in Europe/Lisbon"),
        # São Paulo had its last clock change in 2019; New York still has them.
        ("2026-03-08T02:30", "America/New_York", "does not exist in America/New_York"),
        # The ends of the calendar overflow when moved between zones.
        ("0001-01-01T00:30", "Asia/Macau", "between 1970 and 9000"),
        ("9999-12-31T23:30", "America/Sao_Paulo", "between 1970 and 9000"),
        ("9999-12-31T23:30-03:00", "Asia/Macau", "between 1970 and 9000"),
    ],
)
def test_a_time_that_cannot_be_read_is_refused_in_words(
    typed: str, time_zone: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        clock.to_utc(typed, time_zone=time_zone, field="send_at", label="the sending time")
    assert refused.value.field == "send_at"
    assert words in refused.value.message


def test_an_unknown_zone_is_refused_in_words() -> None:
    with pytest.raises(InvalidInput) as refused:
        clock.to_utc("2026-11-26T07:00", time_zone="Mars/Olympus_Mons", field="since")
    assert refused.value.field == "time_zone" and "not a time zone we know" in str(refused.value)


def test_an_instant_shown_on_a_zones_clock() -> None:
    instant = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    assert clock.in_zone(instant, "Asia/Macau") == datetime(2026, 11, 26, 7, 0, tzinfo=MACAU)
    assert clock.in_zone(instant, "Asia/Macau").date().day == 26
    assert clock.local_text(instant, "Asia/Macau") == "2026-11-26 07:00 Asia/Macau (UTC+8)"
    assert clock.local_text(instant, "Europe/Lisbon") == "2026-11-25 23:00 Europe/Lisbon (UTC+0)"


def test_utcnow_is_aware_utc_and_the_models_use_the_same_one() -> None:
    from newsletter.core import models

    assert models.utcnow is clock.utcnow
    now = clock.utcnow()
    assert now.utcoffset() == timedelta(0)


def test_a_zone_this_machine_no_longer_knows_shows_the_instant_in_utc() -> None:
    # A newsletter's zone was checked when it was stored; a page or an email that shows a
    # date must not fail because the tz database has since lost the name.
    instant = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    shown = clock.in_zone(instant, "Mars/Olympus_Mons")
    assert shown == instant and shown.utcoffset() == timedelta(0)
    assert clock.local_text(instant, "Mars/Olympus_Mons") == "2026-11-25 23:00 UTC"


def test_an_instant_without_a_zone_cannot_be_shown_on_a_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.in_zone(datetime(2026, 11, 25, 23, 0), "Asia/Macau")


@pytest.mark.parametrize("name", ["", "   "])
def test_a_blank_zone_is_refused_in_words(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        clock.zone(name)
    assert refused.value.field == "time_zone" and "Please choose a time zone" in str(refused.value)


def test_a_zone_given_as_a_zone_is_taken_as_it_is() -> None:
    assert clock.zone(MACAU) is MACAU
    assert clock.zone("Asia/Macau") == MACAU
