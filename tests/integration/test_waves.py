"""Local-time sending on SQLite and PostgreSQL, through a real worker to a real SMTP server:
each reader's 07:00, across Lisbon's clock change, one digest a day, dated their day.
(The wave arithmetic alone: tests/unit/digests/test_waves.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.articles.store import ParsedArticle, store_article
from newsletter.cli.status import wave_line
from newsletter.core import clock, db
from newsletter.core.config import get_settings
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    DigestState,
    Newsletter,
    Subscriber,
)
from newsletter.digests import lifecycle, render, schedules
from newsletter.tasks import jobs as tasks
from newsletter.web.app import create_app
from tests.conftest import Mailbox, wait_until_tasks_done
from tests.factories import add_reader, two_schedulers_at_once
from tests.integration.test_admin_pages import _csrf_in, post
from tests.integration.test_cli import newsletter as run_newsletter

LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
FINAL = {DigestState.SENT, DigestState.EMPTY, DigestState.CANCELLED, DigestState.FAILED}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def reader_in(email: str, time_zone: str) -> int:
    subscriber_id = add_reader(email)
    move(subscriber_id, time_zone)
    return subscriber_id


def move(subscriber_id: int, time_zone: str) -> None:
    with db.session_scope() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        subscriber.time_zone = time_zone


def publish(title: str, published_at: datetime) -> None:
    with db.session_scope() as session:
        store_article(
            session,
            ParsedArticle(
                title=title,
                body=f"{title}. The body.",
                summary=f"{title}.",
                url=None,
                language="en",
                topics=[],
                published_at=published_at,
                source="test",
            ),
        )


def schedule_local_time(local_time: str = "07:00") -> None:
    with db.session_scope() as session:
        newsletter = schedules.set_schedule(
            session, slug="daily", cron=None, time_zone=None, local_time=local_time
        )
        newsletter.created_at = LONG_AGO


def tick_at(now: datetime) -> list[int]:
    """What the beat does, on an injected clock: plan, start, hand to the worker."""
    with db.session_scope() as session:
        schedules.plan_recurring(session, now=now)
    with db.session_scope() as session:
        started = lifecycle.start_due(session, now=now)
    for digest_id in started:
        tasks.dispatch_digest.delay(digest_id)
    for digest_id in started:
        wait_for_final(digest_id)
    return started


def wait_for_final(digest_id: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        with db.session_scope() as session:
            state = session.scalar(select(Digest.state).where(Digest.id == digest_id))
        if state in FINAL:
            return str(state)
        if time.monotonic() > deadline:
            raise AssertionError(f"digest {digest_id} still {state} after {timeout}s")
        time.sleep(0.2)


def sent_waves(subscriber_id: int) -> list[datetime]:
    """The instants of the waves that mailed this reader, in order."""
    with db.session_scope() as session:
        return sorted(
            session.scalars(
                select(Digest.scheduled_for)
                .join(Delivery, Delivery.digest_id == Digest.id)
                .where(
                    Delivery.subscriber_id == subscriber_id,
                    Delivery.status == DeliveryStatus.SENT,
                )
            )
        )


def datelines(mailbox: Mailbox, address: str) -> list[str]:
    """The date line of each digest this reader received (the text part's third line)."""
    found = []
    for received in mailbox.to(address):
        part = received.message.get_body(preferencelist=("plain",))
        assert part is not None
        text = part.get_content()
        found.extend(line for line in text.splitlines() if line.startswith("Daily"))
    return sorted(found)


@pytest.fixture
def world(clean_db: str, worker: subprocess.Popen[bytes], mailbox: Mailbox) -> Mailbox:
    return mailbox


def test_each_reader_gets_one_digest_at_their_seven_dated_their_day_across_the_clock_change(
    world: Mailbox,
) -> None:
    lisbon = reader_in("lisboa@example.com", "Europe/Lisbon")
    sao_paulo = reader_in("saopaulo@example.com", "America/Sao_Paulo")
    macau = reader_in("macau@example.com", "Asia/Macau")
    mover = reader_in("mover@example.com", "Asia/Macau")
    no_zone = reader_in("nozone@example.com", "")  # gets the newsletter's: Lisbon
    # An article every three hours: every wave's window holds something new.
    moment = utc(2026, 10, 22, 0)
    while moment < utc(2026, 10, 26, 12):
        publish(f"News of {moment:%d %H}h", moment)
        moment += timedelta(hours=3)
    schedule_local_time("07:00")

    # The clock: every half hour from before Macau's first morning to after São Paulo's
    # third, over the night Lisbon's clocks go back (2026-10-25, 02:00 -> 01:00).
    now = utc(2026, 10, 23, 22, 30)
    while now <= utc(2026, 10, 26, 10, 30):
        tick_at(now)
        if now == utc(2026, 10, 25, 0):
            # After their Macau 07:00 of 25 October, before Lisbon's: mailed once that day.
            move(mover, "Europe/Lisbon")
        now += timedelta(minutes=30)
    wait_until_tasks_done()

    lisbon_mornings = [utc(2026, 10, 24, 6), utc(2026, 10, 25, 7), utc(2026, 10, 26, 7)]
    assert sent_waves(lisbon) == lisbon_mornings  # UTC+1, then UTC+0 after the change
    assert sent_waves(no_zone) == lisbon_mornings
    assert sent_waves(sao_paulo) == [utc(2026, 10, d, 10) for d in (24, 25, 26)]
    assert sent_waves(macau) == [utc(2026, 10, d, 23) for d in (23, 24, 25)]
    assert sent_waves(mover) == [utc(2026, 10, 23, 23), utc(2026, 10, 24, 23), utc(2026, 10, 26, 7)]

    days = [f"Daily digest · October {d}, 2026" for d in (24, 25, 26)]
    for address in ("lisboa", "saopaulo", "macau", "mover", "nozone"):
        assert datelines(world, f"{address}@example.com") == days, address
    assert len(world.messages) == 15

    with db.session_scope() as session:
        made = session.scalars(select(Digest).order_by(Digest.scheduled_for)).all()
        # One wave per instant in use: nine, each made once however often the clock ticked.
        assert len(made) == 9 and all(d.state == DigestState.SENT for d in made)
        assert {(d.local_time, d.local_day) for d in made} == {
            ("07:00", date(2026, 10, d)) for d in (24, 25, 26)
        }
        # Each wave's articles: since the same wave's previous 07:00, until this one.
        lisbon_25 = next(d for d in made if d.scheduled_for == utc(2026, 10, 25, 7))
        assert (lisbon_25.since, lisbon_25.until) == (utc(2026, 10, 24, 6), utc(2026, 10, 25, 7))


def test_lisbon_s_morning_moves_an_hour_earlier_in_utc_when_its_clocks_go_forward(
    world: Mailbox,
) -> None:
    lisbon = reader_in("lisboa@example.com", "Europe/Lisbon")
    macau = reader_in("macau@example.com", "Asia/Macau")
    for hour in range(0, 24 * 4, 3):
        moment = utc(2027, 3, 25) + timedelta(hours=hour)
        publish(f"News of {moment:%d %H}h", moment)
    schedule_local_time("07:00")

    # Over the night of 28 March 2027, when Lisbon's clocks jump from 01:00 to 02:00.
    now = utc(2027, 3, 26, 22, 30)
    while now <= utc(2027, 3, 29, 8):
        tick_at(now)
        now += timedelta(minutes=30)
    wait_until_tasks_done()

    assert sent_waves(lisbon) == [utc(2027, 3, 27, 7), utc(2027, 3, 28, 6), utc(2027, 3, 29, 6)]
    assert sent_waves(macau) == [utc(2027, 3, d, 23) for d in (26, 27, 28)]
    days = [f"Daily digest · March {d}, 2027" for d in (27, 28, 29)]
    assert datelines(world, "lisboa@example.com") == days
    assert datelines(world, "macau@example.com") == days
    with db.session_scope() as session:
        spring = session.scalars(
            select(Digest).where(Digest.scheduled_for == utc(2027, 3, 28, 6))
        ).one()
        # The window of Lisbon's wave is one day on its wall clock: 23 hours that night.
        assert (spring.since, spring.until) == (utc(2027, 3, 27, 7), utc(2027, 3, 28, 6))
        # The web copy of Macau's wave of 28 March (23:00 UTC on the 27th) is dated the 28th.
        macau_wave = session.scalars(
            select(Digest).where(Digest.scheduled_for == utc(2027, 3, 27, 23))
        ).one()
        page = render.web_copy(
            session, digest_id=macau_wave.id, variant_id=None, settings=get_settings()
        )
        assert "March 28, 2027" in page and "March 27, 2027" not in page


def test_newsletters_list_names_a_readers_clock_schedule_and_its_first_wave(
    clean_db: str,
) -> None:
    reader_in("macau@example.com", "Asia/Macau")
    reader_in("saopaulo@example.com", "America/Sao_Paulo")
    schedule_local_time("07:00")
    now = utc(2026, 12, 4, 12)  # Macau's next 07:00 (23:00 UTC) comes before São Paulo's

    with db.session_scope() as session:
        [daily] = schedules.describe_newsletters(session, now=now)

    assert daily["in_reader_zones"] is True
    assert daily["next_due"] == "2026-12-04T23:00:00+00:00"
    listed = run_newsletter("newsletters", "list", database_url=clean_db)
    assert "'0 7 * * *' on each reader's clock" in listed.stdout


def test_a_scheduler_that_loses_the_race_for_a_wave_makes_nothing(clean_db: str) -> None:
    # The first scheduler has inserted Macau's wave but not committed when the second
    # looks: the second's insert of the same wave fails on the unique key, in a savepoint.
    reader_in("macau@example.com", "Asia/Macau")
    reader_in("saopaulo@example.com", "America/Sao_Paulo")
    schedule_local_time("07:00")
    now = utc(2026, 12, 4, 23, 5)  # Macau's 07:00 of 5 December has just gone
    first, second = two_schedulers_at_once(now)
    with db.session_scope() as session:
        [wave] = session.scalars(select(Digest)).all()
        assert wave.scheduled_for == utc(2026, 12, 4, 23)
        assert (wave.local_time, wave.local_day) == ("07:00", date(2026, 12, 5))
        assert first == [wave.id]
    assert second == []


def test_status_shows_the_day_s_waves(world: Mailbox) -> None:
    reader_in("lisboa@example.com", "Europe/Lisbon")
    reader_in("macau@example.com", "Asia/Macau")
    reader_in("macau2@example.com", "Asia/Macau")
    publish("Something", utc(2026, 12, 4, 22))
    schedule_local_time("07:00")
    tick_at(utc(2026, 12, 4, 23, 10))  # Macau's 07:00 of 5 December has gone

    with db.session_scope() as session:
        newsletter = session.scalars(select(Newsletter)).one()
        shown = schedules.day_waves(session, newsletter, now=utc(2026, 12, 4, 23, 10))

    by_due = {s.due: s for s in shown}
    macau = by_due[utc(2026, 12, 4, 23)]
    assert (macau.local_time, macau.utc_offset, macau.zones) == ("07:00", "UTC+8", ["Asia/Macau"])
    assert (macau.readers, macau.state, macau.local_day) == (2, "sent", date(2026, 12, 5))
    lisbon = by_due[utc(2026, 12, 5, 7)]
    assert (lisbon.utc_offset, lisbon.readers, lisbon.state) == ("UTC+0", 1, "next")
    line = wave_line(macau.as_dict())
    assert line.startswith("07:00 2026-12-05 UTC+8") and "Asia/Macau" in line
    assert "2026-12-04 23:00 UTC" in line and line.endswith(f"sent  #{macau.digest_id}")


def test_status_json_lists_a_local_time_newsletter_s_waves(clean_db: str) -> None:
    reader_in("macau@example.com", "Asia/Macau")
    reader_in("saopaulo@example.com", "America/Sao_Paulo")
    schedule_local_time("07:00")

    result = run_newsletter("status", "--json", "--timeout", "0.5", database_url=clean_db)

    assert result.returncode == 0, result.stderr
    [daily] = json.loads(result.stdout)["waves"]
    assert daily["newsletter"] == "daily" and daily["schedule"] == "0 7 * * *"
    offsets = {(w["utc_offset"], tuple(w["zones"])) for w in daily["waves"]}
    assert offsets == {("UTC+8", ("Asia/Macau",)), ("UTC-3", ("America/Sao_Paulo",))}
    assert [w["state"] for w in daily["waves"]].count("next") == 1
    assert all(w["local_time"] == "07:00" and w["readers"] == 1 for w in daily["waves"])
    text = run_newsletter("status", "--timeout", "0.5", database_url=clean_db)
    assert "Waves of daily (each reader's own clock)" in text.stdout
    assert "UTC+8" in text.stdout and "Asia/Macau" in text.stdout


# --- the command line ----------------------------------------------------------------


def stored_schedule() -> tuple[str | None, bool]:
    with db.session_scope() as session:
        newsletter = session.scalars(select(Newsletter).where(Newsletter.slug == "daily")).one()
        return newsletter.schedule_cron, newsletter.schedule_in_reader_zones


def test_set_schedule_local_time_and_back_to_the_newsletter_s_zone(clean_db: str) -> None:
    result = run_newsletter(
        "newsletters", "set-schedule", "daily", "--local-time", "07:00", database_url=clean_db
    )
    assert result.returncode == 0, result.stderr
    assert "'0 7 * * *' on each reader's clock" in result.stdout
    assert stored_schedule() == ("0 7 * * *", True)

    back = run_newsletter(
        "newsletters", "set-schedule", "daily", "0 8 * * *", "--newsletter-zone",
        database_url=clean_db,
    )  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert "'0 8 * * *' in Europe/Lisbon" in back.stdout
    assert stored_schedule() == ("0 8 * * *", False)


@pytest.mark.parametrize(
    "args",
    [
        ("--local-time", "25:00"),
        ("--local-time", "7"),
        ("0 9 * * *", "--local-time", "07:00"),
    ],
)
def test_set_schedule_refuses_a_bad_local_time_in_one_line(
    clean_db: str, args: tuple[str, ...]
) -> None:
    run_newsletter("newsletters", "set-schedule", "daily", "0 6 * * *", database_url=clean_db)

    result = run_newsletter("newsletters", "set-schedule", "daily", *args, database_url=clean_db)

    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert stored_schedule() == ("0 6 * * *", False)


def test_digest_send_local_time_makes_one_wave_per_instant(clean_db: str) -> None:
    reader_in("lisboa@example.com", "Europe/Lisbon")
    reader_in("london@example.com", "Europe/London")
    reader_in("macau@example.com", "Asia/Macau")
    reader_in("saopaulo@example.com", "America/Sao_Paulo")
    before = datetime.now(UTC)

    result = run_newsletter(
        "digest", "send", "--local-time", "07:00", "--json", database_url=clean_db
    )

    assert result.returncode == 0, result.stderr
    ids = [row["id"] for row in json.loads(result.stdout)]
    assert len(ids) == 3  # Lisbon and London share theirs
    with db.session_scope() as session:
        made = session.scalars(select(Digest).order_by(Digest.scheduled_for)).all()
        assert sorted(ids) == sorted(d.id for d in made)
        for digest in made:
            assert digest.scheduled_for is not None
            assert before < digest.scheduled_for <= before + timedelta(days=1)
            assert digest.state == DigestState.SCHEDULED and digest.local_time == "07:00"
            assert digest.until == digest.scheduled_for
        zones_at_seven = defaultdict(list)
        for zone in ("Europe/Lisbon", "Europe/London", "Asia/Macau", "America/Sao_Paulo"):
            for digest in made:
                assert digest.scheduled_for is not None
                local = clock.in_zone(digest.scheduled_for, zone)
                if (local.hour, local.minute, local.date()) == (7, 0, digest.local_day):
                    zones_at_seven[digest.id].append(zone)
        assert sorted(len(z) for z in zones_at_seven.values()) == [1, 1, 2]


@pytest.mark.parametrize(
    "args",
    [("--local-time", "25:00"), ("--local-time", "07:00", "--at", "2026-12-05 07:00")],
)
def test_digest_send_refuses_a_bad_local_time_in_one_line(
    clean_db: str, args: tuple[str, ...]
) -> None:
    reader_in("macau@example.com", "Asia/Macau")

    result = run_newsletter("digest", "send", *args, database_url=clean_db)

    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    with db.session_scope() as session:
        assert session.scalars(select(Digest)).all() == []


# --- the dashboard -------------------------------------------------------------------


@pytest.fixture
def dashboard(clean_db: str) -> Iterator[tuple[TestClient, str]]:
    """A client signed in to the dashboard, and its CSRF token."""
    with TestClient(create_app(), base_url="http://testserver") as client:
        login = client.post(
            "/admin/login",
            data={
                "token": get_settings().admin_token,
                "csrf_token": _csrf_in(client.get("/admin/login").text),
                "next": "/admin",
            },
            follow_redirects=False,
        )
        assert login.status_code == 303, login.text
        yield client, _csrf_in(client.get("/admin").text)


def test_the_dashboard_sets_a_schedule_on_readers_clocks_and_shows_its_waves(
    dashboard: tuple[TestClient, str],
) -> None:
    client, csrf = dashboard
    reader_in("macau@example.com", "Asia/Macau")
    reader_in("lisboa@example.com", "Europe/Lisbon")

    response = post(
        client, "/admin/newsletters/daily/schedule", csrf, cron="0 7 * * *", clock="readers"
    )

    assert response.status_code == 303
    assert stored_schedule() == ("0 7 * * *", True)
    page = client.get("/admin/newsletters")
    assert "07:00 every day on each reader&#39;s own clock, in waves" in page.text  # the notice
    waves_table = re.search(r'<table class="waves">.*?</table>', page.text, re.S)
    assert waves_table, page.text
    assert re.search(r"UTC\+8 Asia/Macau</td>\s*<td>\d{4}-\d\d-\d\d 23:00</td>", waves_table[0])
    assert re.search(r"UTC\+0 Europe/Lisbon</td>\s*<td>\d{4}-\d\d-\d\d 07:00</td>", waves_table[0])
    assert waves_table[0].count(">next<") == 1
    assert '<option value="readers" selected>' in page.text

    back = post(
        client, "/admin/newsletters/daily/schedule", csrf, cron="0 7 * * *", clock="newsletter"
    )
    assert back.status_code == 303
    assert stored_schedule() == ("0 7 * * *", False)
    assert '<table class="waves">' not in client.get("/admin/newsletters").text


def test_a_schedule_without_the_clock_choice_keeps_the_readers_clock(
    dashboard: tuple[TestClient, str],
) -> None:
    client, csrf = dashboard
    schedule_local_time("07:00")

    response = post(client, "/admin/newsletters/daily/schedule", csrf, cron="0 8 * * *")

    assert response.status_code == 303
    assert stored_schedule() == ("0 8 * * *", True)
