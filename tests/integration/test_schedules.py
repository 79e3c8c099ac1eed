"""Recurring digests on SQLite and PostgreSQL: one digest per due time, however many
schedulers tick, and the schedules editors set (due times: tests/unit/digests/test_schedules.py)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from newsletter.core import db
from newsletter.core.models import (
    Digest,
    DigestState,
    Newsletter,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletter.core.validation import InvalidInput
from newsletter.digests import schedules
from newsletter.subscribers.newsletters import UnknownNewsletter, get_by_slug
from tests.factories import two_schedulers_at_once

LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
# 07:10 in Lisbon, which keeps UTC in winter: ten minutes after a 07:00 digest was due.
NOW = datetime(2026, 11, 26, 7, 10, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- planning recurring digests, on SQLite and PostgreSQL ----------------------------


def schedule_daily(cron: str | None = "0 7 * * *", time_zone: str = "Europe/Lisbon") -> int:
    """Give `daily` a schedule, as if it had always existed; its id."""
    with db.session_scope() as session:
        newsletter = schedules.set_schedule(session, slug="daily", cron=cron, time_zone=time_zone)
        newsletter.created_at = LONG_AGO
        return newsletter.id


def digests() -> list[Digest]:
    with db.session_scope() as session:
        return list(session.scalars(select(Digest).order_by(Digest.id)))


def plan(now: datetime = NOW, **options: timedelta) -> list[int]:
    with db.session_scope() as session:
        return schedules.plan_recurring(session, now=now, **options)


def test_a_due_digest_is_made_once_however_often_the_scheduler_ticks(clean_db: str) -> None:
    newsletter_id = schedule_daily()

    created = plan()
    again = plan()
    later = plan(NOW + timedelta(minutes=20))

    [digest] = digests()
    assert created == [digest.id]
    assert again == [] and later == []
    assert digest.state == DigestState.SCHEDULED
    assert digest.scheduled_for == utc(2026, 11, 26, 7, 0)
    assert digest.schedule_key == f"{newsletter_id}@2026-11-26T07:00:00+00:00"


def test_each_due_time_makes_its_own_digest(clean_db: str) -> None:
    schedule_daily()

    plan()
    plan(NOW + timedelta(days=1))

    assert [d.scheduled_for for d in digests()] == [utc(2026, 11, 26, 7), utc(2026, 11, 27, 7)]


def test_macau_digest_is_made_at_eleven_at_night_utc(clean_db: str) -> None:
    schedule_daily(time_zone="Asia/Macau")

    plan(utc(2026, 11, 25, 23, 5))

    [digest] = digests()
    assert digest.scheduled_for == utc(2026, 11, 25, 23, 0)


def test_two_schedulers_starting_together_make_one_digest(clean_db: str) -> None:
    schedule_daily()
    together = clean_db.startswith("postgresql")
    # SQLite lets one writer in at a time: there the two run one after the other.
    start = threading.Barrier(2 if together else 1, timeout=10)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            with db.session_scope() as session:
                start.wait()
                results.append(schedules.plan_recurring(session, now=NOW))
        except BaseException as exc:
            errors.append(exc)

    if together:
        threads = [threading.Thread(target=scheduler) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    else:
        scheduler()
        scheduler()

    assert errors == []
    [digest] = digests()
    assert sorted(results, key=len) == [[], [digest.id]]


def test_a_scheduler_that_loses_the_race_makes_nothing(clean_db: str) -> None:
    # The second scheduler looks while the first's insert is not yet committed (see
    # tests.factories.two_schedulers_at_once).
    schedule_daily()
    first, second = two_schedulers_at_once(NOW)
    [digest] = digests()
    assert first == [digest.id]
    assert second == []


def test_a_rolled_back_tick_leaves_no_digest(clean_db: str) -> None:
    schedule_daily()

    with db.session_scope() as session:
        assert schedules.plan_recurring(session, now=NOW)
        session.rollback()

    assert digests() == []


@pytest.mark.parametrize(
    ("now", "grace", "made"),
    [
        (utc(2026, 11, 26, 8, 0), timedelta(hours=1), True),
        (utc(2026, 11, 26, 8, 1), timedelta(hours=1), False),
        (utc(2026, 11, 26, 8, 1), timedelta(hours=2), True),
        # A scheduler down since yesterday morning does not send yesterday's digest.
        (utc(2026, 11, 27, 6, 59), timedelta(hours=1), False),
    ],
)
def test_no_digest_for_a_due_time_older_than_the_grace(
    clean_db: str, now: datetime, grace: timedelta, made: bool
) -> None:
    schedule_daily()

    created = plan(now, grace=grace)

    assert bool(created) is made
    assert len(digests()) == int(made)


def test_no_digest_for_a_due_time_before_the_newsletter_existed(clean_db: str) -> None:
    schedule_daily()
    with db.session_scope() as session:
        get_by_slug(session, "daily").created_at = utc(2026, 11, 26, 7, 5)

    assert plan() == []
    assert plan(NOW + timedelta(days=1)) != []


def test_no_digest_for_a_newsletter_without_a_schedule(clean_db: str) -> None:
    schedule_daily(cron=None)

    assert plan() == []
    assert digests() == []


def test_a_broken_stored_schedule_does_not_stop_the_others(clean_db: str) -> None:
    with db.session_scope() as session:
        broken = schedules.add_newsletter(session, slug="broken", name="Broken")
        broken.schedule_cron = "not a cron"  # written around validate_cron
        broken.created_at = LONG_AGO
    schedule_daily()

    created = plan()

    [digest] = digests()
    assert created == [digest.id]
    with db.session_scope() as session:
        assert session.get(Digest, digest.id).newsletter.slug == "daily"  # type: ignore[union-attr]


# --- editing newsletters and their schedules -----------------------------------------


def test_set_schedule_sets_normalises_and_clears(clean_db: str) -> None:
    with db.session_scope() as session:
        newsletter = schedules.set_schedule(
            session, slug="daily", cron=" 0  7 * * 1-5", time_zone="Asia/Macau"
        )
        assert (newsletter.schedule_cron, newsletter.time_zone) == ("0 7 * * 1-5", "Asia/Macau")
    with db.session_scope() as session:
        newsletter = schedules.set_schedule(session, slug="daily", cron="0 8 * * *", time_zone=None)
        assert (newsletter.schedule_cron, newsletter.time_zone) == ("0 8 * * *", "Asia/Macau")
    for cleared in (None, ""):
        with db.session_scope() as session:
            schedules.set_schedule(session, slug="daily", cron="0 7 * * *", time_zone=None)
        with db.session_scope() as session:
            schedules.set_schedule(session, slug="daily", cron=cleared, time_zone=None)
        with db.session_scope() as session:
            assert get_by_slug(session, "daily").schedule_cron is None


@pytest.mark.parametrize(
    ("cron", "time_zone", "field"),
    [
        ("* * * * *", "Asia/Macau", "schedule"),
        ("0 7 * * * *", None, "schedule"),
        ("0 8 * * *", "Mars/Olympus_Mons", "time_zone"),
        ("0 8 * * *", "", "time_zone"),
    ],
)
def test_set_schedule_refuses_bad_input_and_changes_nothing(
    clean_db: str, cron: str, time_zone: str | None, field: str
) -> None:
    schedule_daily(cron="0 7 * * *", time_zone="Europe/Lisbon")

    with pytest.raises(InvalidInput) as refused, db.session_scope() as session:
        schedules.set_schedule(session, slug="daily", cron=cron, time_zone=time_zone)

    assert refused.value.field == field
    with db.session_scope() as session:
        newsletter = get_by_slug(session, "daily")
        assert (newsletter.schedule_cron, newsletter.time_zone) == ("0 7 * * *", "Europe/Lisbon")


def test_set_schedule_on_an_unknown_newsletter(clean_db: str) -> None:
    with pytest.raises(UnknownNewsletter), db.session_scope() as session:
        schedules.set_schedule(session, slug="weekly", cron="0 7 * * 1", time_zone=None)


def test_add_newsletter(clean_db: str) -> None:
    with db.session_scope() as session:
        newsletter = schedules.add_newsletter(
            session,
            slug="Macau-Weekly",
            name="  Macau weekly ",
            language="ZH",
            time_zone="Asia/Macau",
            cron="0 8 * * mon",
            description="O melhor da semana.\nThe week's best.",
        )
        newsletter_id = newsletter.id

    with db.session_scope() as session:
        stored = session.get(Newsletter, newsletter_id)
        assert stored is not None
        assert (stored.slug, stored.name, stored.language, stored.time_zone) == (
            "macau-weekly",
            "Macau weekly",
            "zh",
            "Asia/Macau",
        )
        assert stored.schedule_cron == "0 8 * * mon"
        assert stored.description == "O melhor da semana.\nThe week's best."


def test_add_newsletter_defaults(clean_db: str) -> None:
    with db.session_scope() as session:
        newsletter = schedules.add_newsletter(session, slug="pt", name="Notícias")
        assert (newsletter.language, newsletter.time_zone, newsletter.schedule_cron) == (
            "en",
            "Europe/Lisbon",
            None,
        )


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"slug": "daily"}, "slug", "already a newsletter called 'daily'"),
        ({"slug": "DAILY"}, "slug", "already a newsletter called 'daily'"),
        ({"slug": "x"}, "slug", "2 to 64"),
        ({"slug": "a" * 65}, "slug", "2 to 64"),
        ({"slug": "macau weekly"}, "slug", "lowercase letters, digits and dashes"),
        ({"slug": "-macau"}, "slug", "starting and ending"),
        ({"slug": "notícias"}, "slug", "lowercase letters, digits and dashes"),
        ({"name": ""}, "name", "give the newsletter a name"),
        ({"name": "x" * 201}, "name", "too long"),
        ({"name": "Weekly\r\nBcc: all@example.com"}, "name", "control characters"),
        ({"language": "fr"}, "language", "pt, en, zh"),
        ({"time_zone": "Lisbon"}, "time_zone", "not a time zone we know"),
        ({"cron": "* * * * *"}, "schedule", "15 minutes"),
        ({"description": "ok\x1b[31m"}, "description", "control characters"),
        ({"description": "x" * 2001}, "description", "too long"),
    ],
)
def test_add_newsletter_refuses_bad_input_and_adds_nothing(
    clean_db: str, options: dict[str, str], field: str, words: str
) -> None:
    arguments = {"slug": "weekly", "name": "Weekly", **options}

    with pytest.raises(InvalidInput) as refused, db.session_scope() as session:
        schedules.add_newsletter(session, **arguments)

    assert refused.value.field == field
    assert words in refused.value.message
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Newsletter)) == 1


def test_describe_newsletters(clean_db: str) -> None:
    with db.session_scope() as session:
        weekly = schedules.add_newsletter(
            session,
            slug="weekly",
            name="Weekly",
            language="pt",
            time_zone="Asia/Macau",
            cron="0 7 * * 1",
            names={"zh": "澳门周报"},
        )
        for number, status in enumerate(
            [
                SubscriptionStatus.SUBSCRIBED,
                SubscriptionStatus.SUBSCRIBED,
                SubscriptionStatus.PENDING,
                SubscriptionStatus.UNSUBSCRIBED,
            ]
        ):
            reader = Subscriber(email=f"r{number}@example.com", email_key=f"r{number}@example.com")
            session.add(reader)
            session.flush()
            session.add(
                Subscription(subscriber_id=reader.id, newsletter_id=weekly.id, status=status)
            )

    with db.session_scope() as session:
        described = schedules.describe_newsletters(session, now=NOW)  # a Thursday

    assert described == [
        {
            "slug": "daily",
            "name": "Daily digest",
            "translations": {"pt": {"name": "Resumo diário"}, "zh": {"name": "每日摘要"}},
            "language": "en",
            "time_zone": "Europe/Lisbon",
            "schedule": None,
            "in_reader_zones": False,
            "order_by_clicks": False,
            "next_due": None,
            "subscribers": 0,
        },
        {
            "slug": "weekly",
            "name": "Weekly",
            "translations": {"zh": {"name": "澳门周报"}},
            "language": "pt",
            "time_zone": "Asia/Macau",
            "schedule": "0 7 * * 1",
            "in_reader_zones": False,
            "order_by_clicks": False,
            "next_due": "2026-11-29T23:00:00+00:00",  # Monday 07:00 in Macau
            "subscribers": 2,
        },
    ]
