"""Subscriber import from CSV, on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from newsletter.core.models import (
    EventKind,
    Newsletter,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from newsletter.core.validation import InvalidInput
from newsletter.subscribers import newsletters, suppressions
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.importing import ImportReport, import_subscribers_csv

POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SIGNED_UP_AT = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
UNSUBSCRIBED_AT = datetime(2026, 10, 15, 18, 45, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on a database with the `daily` newsletter and a `weekly` one."""
    with Session(engine) as session:
        newsletters.ensure_default_newsletter(session, language="en", time_zone="Europe/Lisbon")
        session.add(Newsletter(slug="weekly", name="Weekly review"))
        session.commit()
        yield session


def _import(session: Session, csv_text: str, **options: Any) -> ImportReport:
    return import_subscribers_csv(
        session,
        io.StringIO(csv_text, newline=""),
        default_language="en",
        default_time_zone="Europe/Lisbon",
        now=NOW,
        **options,
    )


def _signed_up(
    session: Session,
    email: str,
    *,
    name: str = "",
    language: str = "en",
    topics: list[str] | None = None,
    newsletter: str = "daily",
    confirmed: bool = True,
) -> int:
    """A reader who signed up on the web before the import."""
    outcome = subscribers.subscribe(
        session,
        subscribers.SignupForm(
            email=email, name=name, language=language, topics=topics, newsletters=[newsletter]
        ),
        source="web",
        confirmed=confirmed,
        default_language="en",
        default_time_zone="Europe/Lisbon",
        confirmation_interval=timedelta(hours=1),
        now=SIGNED_UP_AT,
    )
    session.commit()
    assert outcome.subscriber_id is not None
    return outcome.subscriber_id


def _subscriber(session: Session, email_key: str) -> Subscriber:
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == email_key))
    assert subscriber is not None, email_key
    return subscriber


def _statuses(session: Session, email_key: str) -> dict[str, str]:
    """The subscriber's subscriptions as {newsletter slug: status}."""
    rows = session.execute(
        select(Newsletter.slug, Subscription.status)
        .join(Subscription.newsletter)
        .join(Subscription.subscriber)
        .where(Subscriber.email_key == email_key)
    )
    return {slug: status for slug, status in rows}


def _events(session: Session, subscriber_id: int) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(kind, newsletter slug, detail) of a subscriber's events, oldest first."""
    return [
        (kind, slug, detail)
        for kind, slug, detail in session.execute(
            select(SubscriberEvent.kind, Newsletter.slug, SubscriberEvent.detail)
            .outerjoin(Newsletter, Newsletter.id == SubscriberEvent.newsletter_id)
            .where(SubscriberEvent.subscriber_id == subscriber_id)
            .order_by(SubscriberEvent.id)
        )
    ]


def _count(session: Session, model: type[Any]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _snapshot(session: Session) -> list[list[tuple[Any, ...]]]:
    """Every row the import could touch, to compare before and after."""
    return [
        [tuple(row) for row in session.execute(select(table).order_by(table.c.id))]
        for table in (
            Subscriber.__table__,
            Subscription.__table__,
            SubscriberEvent.__table__,
        )
    ]


# --- New readers ------------------------------------------------------------------------


def test_new_readers_are_added_pending_and_listed_for_confirmation(session: Session) -> None:
    report = _import(
        session,
        "email,name,language,topics\n"
        "ana@example.com,Ana Silva,pt,macau;economia\n"
        'bo@example.com,,,"sport, Macau;sport"\n',
    )
    session.commit()

    assert (report.added, report.updated, report.unchanged, report.refused) == (2, 0, 0, [])
    ana, bo = _subscriber(session, "ana@example.com"), _subscriber(session, "bo@example.com")
    assert report.pending_subscriber_ids == [ana.id, bo.id]
    assert report.pending == 2
    assert (ana.name, ana.language, ana.topics, ana.time_zone) == (
        "Ana Silva",
        "pt",
        ["macau", "economia"],
        "Europe/Lisbon",
    )
    # The columns a bulk insert leaves to the models' defaults are filled all the same.
    assert (ana.status, ana.soft_bounce_count) == (SubscriberStatus.ACTIVE, 0)
    assert (ana.created_at, ana.updated_at) == (NOW, NOW)
    assert (bo.name, bo.language, bo.topics) == ("", "en", ["sport", "macau"])

    subscription = ana.subscriptions[0]
    assert len(ana.subscriptions) == 1
    assert subscription.newsletter.slug == "daily"
    assert subscription.status == SubscriptionStatus.PENDING
    assert (subscription.consent_source, subscription.confirmed_at) == ("import", None)
    assert subscription.created_at == NOW
    assert _events(session, ana.id) == [(EventKind.SIGNED_UP, None, {"source": "import"})]


def test_confirmed_rows_are_subscribed_with_confirmed_events(session: Session) -> None:
    waiting = _signed_up(session, "waiting@example.com", confirmed=False)
    still_waiting = _signed_up(session, "still.waiting@example.com", confirmed=False)

    report = _import(
        session,
        "email,newsletter,confirmed\n"
        "new@example.com,weekly,Yes\n"
        "also.new@example.com,,1\n"
        "waiting@example.com,daily,TRUE\n"
        "still.waiting@example.com,daily,no\n",
    )
    session.commit()

    assert (report.added, report.updated, report.unchanged, report.refused) == (2, 1, 1, [])
    # Nobody here needs asking: three are confirmed, the fourth was asked when signing up.
    assert (report.pending, report.pending_subscriber_ids) == (0, [])
    assert _statuses(session, "new@example.com") == {"weekly": SubscriptionStatus.SUBSCRIBED}
    assert _statuses(session, "also.new@example.com") == {"daily": SubscriptionStatus.SUBSCRIBED}
    assert _statuses(session, "waiting@example.com") == {"daily": SubscriptionStatus.SUBSCRIBED}
    assert _statuses(session, "still.waiting@example.com") == {"daily": SubscriptionStatus.PENDING}

    new = _subscriber(session, "new@example.com")
    assert _events(session, new.id) == [
        (EventKind.SIGNED_UP, None, {"source": "import"}),
        (EventKind.CONFIRMED, "weekly", {"source": "import"}),
    ]
    assert new.subscriptions[0].confirmed_at == NOW
    assert new.subscriptions[0].consent_source == "import"
    assert _events(session, waiting)[-1] == (EventKind.CONFIRMED, "daily", {"source": "import"})
    confirmed = _subscriber(session, "waiting@example.com").subscriptions[0]
    assert (confirmed.confirmed_at, confirmed.consent_source) == (NOW, "import")
    assert [kind for kind, _, _ in _events(session, still_waiting)] == [EventKind.SIGNED_UP]


# --- Readers already known --------------------------------------------------------------


def test_known_readers_are_matched_whatever_the_capitals_and_keep_what_cells_leave_empty(
    session: Session,
) -> None:
    ana = _signed_up(session, "ana@example.com", name="Ana", topics=["macau"])
    carl = _signed_up(session, "carl@example.com", name="Carl", language="pt")
    dora = _signed_up(session, "dora@example.com", name="Dora")
    carl_updated_at = _subscriber(session, "carl@example.com").updated_at

    report = _import(
        session,
        "email,name,language,topics,newsletter\n"
        "Ana@Example.COM,,pt,,\n"
        "carl@example.com,Carl,PT,,daily\n"
        "DORA@example.com,,,,weekly\n",
    )
    session.commit()

    assert (report.added, report.updated, report.unchanged, report.refused) == (0, 2, 1, [])
    assert _count(session, Subscriber) == 3
    reader = _subscriber(session, "ana@example.com")
    assert (reader.email, reader.name, reader.language, reader.topics) == (
        "ana@example.com",
        "Ana",
        "pt",
        ["macau"],
    )
    assert reader.updated_at == NOW
    assert _events(session, ana)[-1] == (
        EventKind.PREFERENCES_CHANGED,
        None,
        {"source": "import", "fields": ["language"]},
    )
    assert _subscriber(session, "carl@example.com").updated_at == carl_updated_at
    assert len(_events(session, carl)) == 2  # signed up and confirmed, on the web
    # A newsletter Dora was not on is added, and waits for her confirmation.
    assert _statuses(session, "dora@example.com") == {
        "daily": SubscriptionStatus.SUBSCRIBED,
        "weekly": SubscriptionStatus.PENDING,
    }
    assert report.pending_subscriber_ids == [dora]


def test_an_unsubscribed_reader_is_not_subscribed_again_nor_changed(session: Session) -> None:
    left = _signed_up(session, "left@example.com", name="Lee")
    subscribers.unsubscribe(session, subscriber_id=left, source="link", now=UNSUBSCRIBED_AT)
    session.commit()
    before = _snapshot(session)

    report = _import(session, "email,name,confirmed\nLeft@example.com,Lee Smith,yes\n")
    session.commit()

    assert report.refused == [
        (2, "unsubscribed on 2026-10-15; only the reader can subscribe again")
    ]
    assert (report.added, report.updated, report.unchanged) == (0, 0, 0)
    assert _snapshot(session) == before


# --- Refused rows -----------------------------------------------------------------------


def test_each_refused_row_is_reported_with_its_line_and_the_rest_are_imported(
    session: Session,
) -> None:
    _signed_up(session, "left@example.com")
    left = _subscriber(session, "left@example.com").id
    subscribers.unsubscribe(session, subscriber_id=left, source="link", now=UNSUBSCRIBED_AT)
    suppressions.suppress(session, email_key="gone@example.com", email=None, reason="erased")
    bounced = _signed_up(session, "bounced@example.com")
    _subscriber(session, "bounced@example.com").status = SubscriberStatus.BOUNCED
    session.commit()

    report = _import(
        session,
        "email,name,language,newsletter,confirmed\r\n"
        "good@example.com,Good,,,\r\n"  # 2
        "bob@,Bob,,,\r\n"  # 3
        'eve@example.com,"Eve\r\nBcc: all@example.com",,,\r\n'  # 4 and 5
        "fr@example.com,,fr,,\r\n"  # 6
        "nl@example.com,,,monthly,\r\n"  # 7
        "maybe@example.com,,,,perhaps\r\n"  # 8
        "Gone@Example.com,,,,\r\n"  # 9
        "GOOD@example.com,Twice,,,\r\n"  # 10
        "left@example.com,,,,yes\r\n"  # 11
        "\r\n"  # 12, blank: skipped
        "bounced@example.com,,,,\r\n"  # 13
        "extra@example.com,,,,,surplus\r\n"  # 14
        ",Nobody,,,\r\n"  # 15
        "late@example.com,,,,\r\n",  # 16
    )
    session.commit()

    assert [line for line, _ in report.refused] == [3, 4, 6, 7, 8, 9, 10, 11, 13, 14, 15]
    reasons = dict(report.refused)
    assert reasons[3].startswith("'bob@': That email address is not valid: ")
    assert reasons[4].startswith("name 'Eve\\r\\nBcc: all@example.com': ")
    assert "line breaks" in reasons[4]
    assert reasons[6].startswith("language 'fr': We do not offer the language 'fr'")
    assert reasons[7] == "There is no newsletter called 'monthly'."
    assert reasons[8] == "confirmed 'perhaps': say true or false (yes/no, 1/0), or nothing"
    assert reasons[9] == "on the suppression list"
    assert reasons[10] == "duplicate of line 2"
    assert reasons[11] == "unsubscribed on 2026-10-15; only the reader can subscribe again"
    assert reasons[13] == "not mailed: the address is marked bounced"
    assert reasons[14] == "the row has 6 cells but the first line names 5 columns"
    assert reasons[15] == "no email address"

    assert (report.added, report.updated, report.unchanged) == (2, 0, 0)
    assert _subscriber(session, "good@example.com").name == "Good"
    _subscriber(session, "late@example.com")
    assert (
        session.scalar(select(Subscriber).where(Subscriber.email_key == "gone@example.com")) is None
    )
    assert _statuses(session, "left@example.com") == {"daily": SubscriptionStatus.UNSUBSCRIBED}
    assert _statuses(session, "bounced@example.com") == {"daily": SubscriptionStatus.SUBSCRIBED}
    assert len(_events(session, bounced)) == 2


def test_a_duplicate_in_a_later_chunk_and_a_known_reader_there_are_handled_alike(
    session: Session,
) -> None:
    _signed_up(session, "known@example.com", name="Known")

    report = _import(
        session,
        "email,name\n"
        "a@example.com,A\n"
        "b@example.com,B\n"
        "c@example.com,C\n"
        "known@example.com,Known Again\n"
        "A@example.com,A again\n"
        "d@example.com,D\n",
        chunk_size=2,
    )
    session.commit()

    assert (report.added, report.updated, report.unchanged) == (4, 1, 0)
    assert report.refused == [(6, "duplicate of line 2")]
    assert _subscriber(session, "a@example.com").name == "A"
    assert _subscriber(session, "known@example.com").name == "Known Again"
    assert _count(session, Subscriber) == 5


def test_a_row_refused_for_a_bad_cell_does_not_make_its_correction_a_duplicate(
    session: Session,
) -> None:
    report = _import(session, "email,language\nana@example.com,fr\nana@example.com,pt\n")

    assert [line for line, _ in report.refused] == [2]
    assert report.added == 1


# --- The file itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("csv_text", "words"),
    [
        ("email,name,phone\nana@example.com,Ana,123\n", "'phone'"),
        ("name,language\nAna,pt\n", "no email column"),
        ("email,name,Email\nana@example.com,Ana,x\n", "twice"),
        ("email,name,\nana@example.com,Ana,\n", "Column 3 has no name"),
        ("", "empty"),
    ],
)
def test_a_file_with_columns_we_do_not_know_imports_nothing(
    session: Session, csv_text: str, words: str
) -> None:
    before = _snapshot(session)

    with pytest.raises(InvalidInput) as refused:
        _import(session, csv_text)

    assert refused.value.field == "file"
    assert words in refused.value.message
    assert _snapshot(session) == before


def test_columns_may_come_in_any_order_with_a_byte_order_mark_and_capitals(
    session: Session,
) -> None:
    report = _import(session, "\ufeffConfirmed, Email ,TOPICS\nyes,ana@example.com,macau\n")

    assert report.added == 1
    assert _subscriber(session, "ana@example.com").topics == ["macau"]
    assert _statuses(session, "ana@example.com") == {"daily": SubscriptionStatus.SUBSCRIBED}


# --- Dry run ----------------------------------------------------------------------------


def test_a_dry_run_changes_nothing_and_reports_what_a_real_run_does(session: Session) -> None:
    _signed_up(session, "ana@example.com", name="Ana")
    _signed_up(session, "waiting@example.com", confirmed=False)
    left = _signed_up(session, "left@example.com")
    subscribers.unsubscribe(session, subscriber_id=left, source="link", now=UNSUBSCRIBED_AT)
    session.commit()
    csv_text = (
        "email,name,newsletter,confirmed\n"
        "ana@example.com,Ana Maria,,\n"
        "waiting@example.com,,,yes\n"
        "left@example.com,,,\n"
        "new@example.com,New,weekly,\n"
        "new.confirmed@example.com,,,1\n"
        "bob@,,,\n"
        "ana@example.com,,,\n"
    )
    before = _snapshot(session)

    rehearsal = _import(session, csv_text, dry_run=True, chunk_size=3)
    session.commit()

    assert _snapshot(session) == before
    assert rehearsal.dry_run
    assert rehearsal.pending_subscriber_ids == []  # ids of rows that were never kept

    report = _import(session, csv_text, chunk_size=3)
    session.commit()

    assert _snapshot(session) != before
    assert not report.dry_run
    assert len(report.pending_subscriber_ids) == report.pending == rehearsal.pending == 1
    real, dry = report.as_dict(), rehearsal.as_dict()
    for key in ("pending_subscriber_ids", "dry_run"):
        real.pop(key), dry.pop(key)
    assert dry == real
    assert (report.added, report.updated, report.unchanged, len(report.refused)) == (2, 2, 0, 3)


def test_a_dry_run_leaves_the_callers_own_unsaved_work_alone(session: Session) -> None:
    session.add(Newsletter(slug="monthly", name="Monthly"))
    session.flush()

    report = _import(session, "email,newsletter\nana@example.com,monthly\n", dry_run=True)
    session.commit()

    assert report.added == 1
    assert session.scalar(select(Newsletter.name).where(Newsletter.slug == "monthly")) == "Monthly"
    assert _count(session, Subscriber) == 0


def test_the_report_reads_as_plain_data(session: Session) -> None:
    report = _import(session, "email\nana@example.com\nbob@\n")

    data = report.as_dict()

    assert data["added"] == 1
    assert data["pending"] == 1
    assert data["pending_subscriber_ids"] == [_subscriber(session, "ana@example.com").id]
    assert data["refused"][0]["line"] == 3
    assert data["refused"][0]["reason"].startswith("'bob@': That email address is not valid")
    assert (data["updated"], data["unchanged"], data["dry_run"]) == (0, 0, False)


# --- Size -------------------------------------------------------------------------------


def test_twenty_thousand_rows_are_imported_completely(session: Session) -> None:
    rows = 20_000
    lines = ["email,name,language,topics,newsletter,confirmed"]
    lines += [
        f"reader{i}@example.com,Reader {i},{('en', 'pt', 'zh')[i % 3]},"
        f"topic{i % 7};news,{('daily', 'weekly')[i % 2]},{('no', 'yes')[i % 4 == 0]}"
        for i in range(rows)
    ]

    report = _import(session, "\n".join(lines) + "\n")
    session.commit()

    assert (report.added, report.updated, report.unchanged, report.refused) == (rows, 0, 0, [])
    assert report.pending == len(report.pending_subscriber_ids) == rows * 3 // 4
    assert _count(session, Subscriber) == rows
    assert _count(session, Subscription) == rows
    assert _count(session, SubscriberEvent) == rows + rows // 4
    reader = _subscriber(session, "reader19999@example.com")
    assert (reader.language, reader.topics) == ("pt", ["topic0", "news"])
    assert _statuses(session, "reader19999@example.com") == {"weekly": SubscriptionStatus.PENDING}
