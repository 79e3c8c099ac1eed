"""Waves of a local-time send: which UTC instant is 07:00 on each reader's clock, DST and all.

Planning and sending them through a real worker is tested in
tests/integration/test_waves.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from newsletter.core import clock
from newsletter.core.models import Digest
from newsletter.core.validation import InvalidInput
from newsletter.digests import schedules, waves

THREE = ("Europe/Lisbon", "America/Sao_Paulo", "Asia/Macau")
DAILY = "0 7 * * *"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def instants(found: list[waves.Wave]) -> list[tuple[datetime, str, date, tuple[str, ...]]]:
    return [(w.due, w.local_time, w.local_day, w.zones) for w in found]


def test_three_zones_three_waves_in_lisbon_summer_time() -> None:
    # 2026-10-24 is Lisbon's last day of summer time (UTC+1).
    found = schedules.waves_due(DAILY, THREE, now=utc(2026, 10, 24, 12))

    assert instants(found) == [
        (utc(2026, 10, 23, 23), "07:00", date(2026, 10, 24), ("Asia/Macau",)),
        (utc(2026, 10, 24, 6), "07:00", date(2026, 10, 24), ("Europe/Lisbon",)),
        (utc(2026, 10, 24, 10), "07:00", date(2026, 10, 24), ("America/Sao_Paulo",)),
    ]
    assert [clock.utc_offset_text(w.utc_offset) for w in found] == ["UTC+8", "UTC+1", "UTC-3"]


def test_lisbon_falls_back_on_2026_10_25_and_its_window_is_25_hours() -> None:
    [wave] = schedules.waves_due(DAILY, ["Europe/Lisbon"], now=utc(2026, 10, 25, 8))

    assert wave.due == utc(2026, 10, 25, 7)
    assert wave.local_day == date(2026, 10, 25)
    assert clock.utc_offset_text(wave.utc_offset) == "UTC+0"
    # The previous 07:00 on Lisbon's wall clock was in summer time: 25 hours earlier.
    assert wave.since == utc(2026, 10, 24, 6)


def test_lisbon_springs_forward_on_2027_03_28_and_its_window_is_23_hours() -> None:
    [wave] = schedules.waves_due(DAILY, ["Europe/Lisbon"], now=utc(2027, 3, 28, 8))

    assert wave.due == utc(2027, 3, 28, 6)
    assert clock.utc_offset_text(wave.utc_offset) == "UTC+1"
    assert wave.since == utc(2027, 3, 27, 7)


def test_sao_paulo_and_macau_keep_their_offset_all_year() -> None:
    for now in (utc(2026, 7, 1, 12), utc(2026, 12, 1, 12), utc(2027, 3, 28, 12)):
        macau, sao_paulo = (
            schedules.waves_due(DAILY, [zone], now=now)[0]
            for zone in ("Asia/Macau", "America/Sao_Paulo")
        )
        assert macau.due.hour == 23 and clock.utc_offset_text(macau.utc_offset) == "UTC+8"
        assert sao_paulo.due.hour == 10 and clock.utc_offset_text(sao_paulo.utc_offset) == "UTC-3"
        assert macau.due - macau.since == timedelta(days=1)


def test_a_half_hour_zone_has_a_wave_of_its_own() -> None:
    found = schedules.waves_due(DAILY, ["Asia/Kolkata", "Asia/Macau"], now=utc(2026, 12, 5, 2))

    assert instants(found) == [
        (utc(2026, 12, 4, 23), "07:00", date(2026, 12, 5), ("Asia/Macau",)),
        (utc(2026, 12, 5, 1, 30), "07:00", date(2026, 12, 5), ("Asia/Kolkata",)),
    ]
    assert clock.utc_offset_text(found[1].utc_offset) == "UTC+5:30"


def test_zones_with_the_same_offset_that_day_share_a_wave() -> None:
    zones = ["Europe/Lisbon", "Europe/London", "Africa/Abidjan"]
    # In winter all three are at UTC+0: one wave.
    [winter] = schedules.waves_due(DAILY, zones, now=utc(2026, 12, 5, 8))
    assert winter.zones == ("Africa/Abidjan", "Europe/Lisbon", "Europe/London")
    # In summer Lisbon and London are at UTC+1, Abidjan stays at UTC+0: two waves.
    summer = schedules.waves_due(DAILY, zones, now=utc(2026, 7, 5, 8))
    assert [w.zones for w in summer] == [("Europe/Lisbon", "Europe/London"), ("Africa/Abidjan",)]


def test_upcoming_waves_come_after_now() -> None:
    found = schedules.waves_due(DAILY, THREE, now=utc(2026, 12, 4, 12), upcoming=True)

    later = [w.due for w in found if w.due > utc(2026, 12, 4, 12)]
    assert later == [utc(2026, 12, 4, 23), utc(2026, 12, 5, 7), utc(2026, 12, 5, 10)]


def test_a_zone_is_in_a_wave_only_when_its_clock_reads_the_wave_s_time() -> None:
    macau_morning = {"due": utc(2026, 12, 4, 23), "local_time": "07:00"}

    assert waves.in_wave("Asia/Macau", local_day=date(2026, 12, 5), **macau_morning)
    assert waves.in_wave("Asia/Shanghai", local_day=date(2026, 12, 5), **macau_morning)
    assert not waves.in_wave("Asia/Macau", local_day=date(2026, 12, 4), **macau_morning)
    assert not waves.in_wave("Europe/Lisbon", local_day=date(2026, 12, 5), **macau_morning)


def test_a_reader_without_a_usable_zone_gets_the_newsletter_s() -> None:
    assert waves.reader_zone("Asia/Macau", "Europe/Lisbon") == "Asia/Macau"
    assert waves.reader_zone("", "Europe/Lisbon") == "Europe/Lisbon"
    assert waves.reader_zone("Mars/Olympus_Mons", "Europe/Lisbon") == "Europe/Lisbon"


def test_a_macau_wave_is_dated_the_macau_day() -> None:
    digest = Digest(
        scheduled_for=utc(2026, 12, 4, 23), local_time="07:00", local_day=date(2026, 12, 5)
    )

    dated = waves.dateline(digest)

    assert dated is not None and dated.date() == date(2026, 12, 5)
    assert dated.utcoffset() == timedelta(hours=8)
    assert waves.dateline(Digest(scheduled_for=utc(2026, 12, 4, 23))) is None


@pytest.mark.parametrize("text", ["25:00", "07:60", "7", "seven", "", "07:00:00", "-1:00"])
def test_a_local_time_must_be_a_time_of_day(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        waves.validate_local_time(text)
    assert caught.value.field == "local_time"


def test_a_local_time_is_written_hh_mm_and_makes_a_daily_cron() -> None:
    assert waves.validate_local_time(" 7:05 ") == "07:05"
    assert waves.daily_cron("07:00") == "0 7 * * *"
    assert waves.daily_cron("23:30") == "30 23 * * *"


def test_the_first_wave_still_to_come_is_next_and_made_ones_show_their_state() -> None:
    now = utc(2026, 12, 5, 8)
    planned = schedules.waves_due(DAILY, THREE, now=now, upcoming=True)
    sent = Digest(
        id=7,
        state="sent",
        scheduled_for=utc(2026, 12, 5, 7),
        local_time="07:00",
        local_day=date(2026, 12, 5),
    )
    readers = {"Europe/Lisbon": 2, "America/Sao_Paulo": 1, "Asia/Macau": 3}

    shown = waves.wave_statuses(planned, [sent], readers, now=now)

    by_due = {s.due: s for s in shown}
    assert by_due[utc(2026, 12, 5, 7)].state == "sent"
    assert by_due[utc(2026, 12, 5, 7)].digest_id == 7
    assert by_due[utc(2026, 12, 5, 10)].state == "next"
    assert by_due[utc(2026, 12, 5, 10)].readers == 1
    assert by_due[utc(2026, 12, 5, 23)].state == "planned"
    macau = by_due[utc(2026, 12, 5, 23)]
    assert (macau.utc_offset, macau.zones, macau.readers) == ("UTC+8", ["Asia/Macau"], 3)


def test_zones_a_day_apart_at_one_instant_are_two_waves_with_two_keys() -> None:
    # At 17:00 UTC it is 07:00 in Honolulu (UTC-10) on the 4th and 07:00 in Kiritimati
    # (UTC+14) on the 5th: one instant, two days, two waves. One key for both made the
    # second wave never, and its readers had no digest, every day.
    now = utc(2026, 12, 4, 17, 5)
    found = schedules.waves_due(DAILY, ["Pacific/Honolulu", "Pacific/Kiritimati"], now=now)

    assert instants(found) == [
        (utc(2026, 12, 4, 17), "07:00", date(2026, 12, 4), ("Pacific/Honolulu",)),
        (utc(2026, 12, 4, 17), "07:00", date(2026, 12, 5), ("Pacific/Kiritimati",)),
    ]
    assert len({wave.schedule_key(1) for wave in found}) == 2
    readers = {"Pacific/Honolulu": 1, "Pacific/Kiritimati": 2}
    shown = waves.wave_statuses(found, [], readers, now=now)
    assert [(s.local_day.day, s.utc_offset, s.readers) for s in shown] == [
        (4, "UTC-10", 1),
        (5, "UTC+14", 2),
    ]
