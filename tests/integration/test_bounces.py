"""Bounces and complaints through each door, and what they do to the reader and the digest."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.bounces import policy as bounces
from newsletter.bounces.doors.smtp import start_receiver
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import (
    BounceEvent,
    Delivery,
    DeliveryStatus,
    SubscriberStatus,
    SubscriptionStatus,
)
from newsletter.core.tokens import make_verp_token
from newsletter.subscribers import store as subscribers
from newsletter.subscribers import suppressions
from newsletter.tasks import jobs as tasks
from tests.conftest import ROOT, free_port
from tests.factories import add_reader
from tests.factories import sent_delivery as make_delivery

CORPUS = ROOT / "tests" / "data" / "bounces"
FIXED_TOKEN = "s7d42-0123456789abcdef0123"
READER = "leitora@example.com"


def reader() -> int:
    return add_reader(READER, name="Leitora", language="pt")


def sent_delivery(
    subscriber_id: int, *, message_id: str = "<d42.abcdef123456@plataforma.test>"
) -> int:
    return make_delivery(subscriber_id, message_id=message_id)


def corpus(name: str, *, subscriber_id: int | None = None, delivery_id: int | None = None) -> bytes:
    """A sample bounce, its VERP token made valid for our reader and delivery when given."""
    raw = (CORPUS / name).read_bytes()
    if subscriber_id is not None:
        token = make_verp_token(get_settings().secret_key, subscriber_id, delivery_id)
        raw = raw.replace(FIXED_TOKEN.encode(), token.encode())
    return raw


def on_the_wire(raw: bytes) -> bytes:
    """SMTP wants CRLF line ends; the sample files are written with LF."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def state(subscriber_id: int) -> tuple[str, list[str], bool, list[str]]:
    with db.session_scope() as session:
        subscriber = subscribers.get_subscriber(session, subscriber_id)
        return (
            subscriber.status,
            [s.status for s in subscriber.subscriptions],
            suppressions.is_listed(session, subscriber.email_key),
            [e.kind for e in subscriber.events],
        )


def events() -> int:
    with db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(BounceEvent)) or 0)


def process(raw: bytes, recipients: list[str] | None = None) -> bounces.BounceOutcome:
    with db.session_scope() as session:
        return bounces.process_message(
            session, raw, settings=get_settings(), envelope_recipients=recipients or []
        )


@pytest.mark.parametrize(
    "name",
    [
        "postfix_user_unknown.eml",
        "exim_failed.eml",
        "exchange_ndr.eml",
        "gmail_nosuchuser.eml",
        "yahoo_failure.eml",
        "qmail_failure.eml",
    ],
)
def test_a_hard_bounce_suppresses_the_reader_and_bounces_the_delivery(
    clean_db: str, name: str
) -> None:
    subscriber_id = reader()
    delivery_id = sent_delivery(subscriber_id)
    outcome = process(corpus(name, subscriber_id=subscriber_id, delivery_id=delivery_id))
    assert (outcome.kind, outcome.subscriber_id) == ("hard", subscriber_id)
    status, _, suppressed, kinds = state(subscriber_id)
    assert status == SubscriberStatus.BOUNCED and suppressed and kinds[-1] == "bounced"
    with db.session_scope() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        # Found by the VERP token, or by the returned Message-ID / address otherwise.
        assert delivery.status in (DeliveryStatus.BOUNCED, DeliveryStatus.SENT)
        event = session.scalars(select(BounceEvent)).one()
        assert event.raw and event.kind == "hard"


def test_the_same_bounce_twice_counts_once(clean_db: str) -> None:
    subscriber_id = reader()
    raw = corpus("postfix_user_unknown.eml", subscriber_id=subscriber_id)
    assert process(raw).action == "suppressed"
    assert process(raw).action == "duplicate"
    assert events() == 1


def test_three_soft_bounces_without_a_delivery_between_bounce_the_reader(clean_db: str) -> None:
    subscriber_id = reader()
    settings = get_settings()
    outcomes = []
    for n in range(3):
        with db.session_scope() as session:
            outcomes.append(
                bounces.record_provider_event(
                    session,
                    provider="test",
                    event_id=f"soft-{n}",
                    kind="soft",
                    settings=settings,
                    email=READER,
                    status="4.2.2",
                    diagnostic="mailbox full",
                )
            )
    assert [o.action for o in outcomes] == [
        "scored 1 of 3",
        "scored 2 of 3",
        "suppressed after 3 soft bounces",
    ]
    assert state(subscriber_id)[0] == SubscriberStatus.BOUNCED


def test_a_delivery_between_soft_bounces_resets_the_score(clean_db: str) -> None:
    subscriber_id = reader()
    settings = get_settings()

    def soft(n: int) -> str:
        with db.session_scope() as session:
            return bounces.record_provider_event(
                session,
                provider="test",
                event_id=f"s{n}",
                kind="soft",
                settings=settings,
                email=READER,
            ).action

    assert soft(1) == "scored 1 of 3" and soft(2) == "scored 2 of 3"
    sent_delivery(subscriber_id, message_id="<later@plataforma.test>")
    with db.session_scope() as session:  # it went out after the bounces
        session.execute(
            Delivery.__table__.update().values(sent_at=datetime.now(UTC))  # type: ignore[attr-defined]
        )
    assert soft(3) == "scored 1 of 3"
    assert state(subscriber_id)[0] == SubscriberStatus.ACTIVE


def test_a_delayed_warning_and_mailbox_full_are_soft(clean_db: str) -> None:
    subscriber_id = reader()
    for name in ("delayed_warning.eml", "postfix_mailbox_full.eml"):
        outcome = process(corpus(name, subscriber_id=subscriber_id))
        assert outcome.kind == "soft", name
    assert state(subscriber_id)[0] == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("name", ["arf_complaint.eml", "hotmail_arf.eml"])
def test_a_complaint_unsubscribes_from_everything_and_suppresses(clean_db: str, name: str) -> None:
    subscriber_id = reader()
    outcome = process(corpus(name, subscriber_id=subscriber_id))
    assert outcome.kind == "complaint"
    status, subscriptions, suppressed, kinds = state(subscriber_id)
    assert status == SubscriberStatus.COMPLAINED and suppressed
    assert subscriptions == [SubscriptionStatus.UNSUBSCRIBED]
    assert "complained" in kinds


@pytest.mark.parametrize(
    "name", ["out_of_office.eml", "vacation_pt.eml", "challenge_response.eml", "malformed_mime.eml"]
)
def test_auto_replies_and_garbage_change_nothing(clean_db: str, name: str) -> None:
    subscriber_id = reader()
    before = state(subscriber_id)
    assert process(corpus(name, subscriber_id=subscriber_id)).action == "ignored"
    assert state(subscriber_id) == before and events() == 0


def test_a_forged_token_or_an_address_we_never_mailed_changes_nothing(clean_db: str) -> None:
    subscriber_id = reader()
    before = state(subscriber_id)
    forged = corpus("postfix_user_unknown.eml").replace(
        READER.encode(), b"stranger@example.org"
    )  # the fixed token in the file was never made with our key
    assert process(forged).action == "ignored"
    assert state(subscriber_id) == before and events() == 0


def test_a_mailed_unsubscribe_leaves_everything(clean_db: str) -> None:
    subscriber_id = reader()
    token = make_verp_token(get_settings().secret_key, subscriber_id)
    outcome = process(
        b"From: leitora@example.com\r\nSubject: unsubscribe\r\n\r\n",
        [f"unsubscribe+{token}@plataforma.test"],
    )
    assert outcome.action == "unsubscribed"
    assert state(subscriber_id)[1] == [SubscriptionStatus.UNSUBSCRIBED]
    forged = process(b"Subject: x\r\n\r\n", ["unsubscribe+s1-00000000000000000000@plataforma.test"])
    assert forged.action == "ignored"


@pytest.fixture
def receiver(clean_db: str, worker: subprocess.Popen[bytes]) -> Iterator[int]:
    port = free_port()
    controller = start_receiver(
        get_settings(),
        lambda raw, rcpts: tasks.process_inbound.delay(raw, rcpts),
        host="127.0.0.1",
        port=port,
    )
    yield port
    controller.stop()


def wait_for(predicate: object, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.2)


def test_the_smtp_receiver_takes_bounces_over_a_real_socket(receiver: int) -> None:
    subscriber_id = reader()
    token = make_verp_token(get_settings().secret_key, subscriber_id)
    with smtplib.SMTP("127.0.0.1", receiver) as smtp:
        smtp.sendmail(
            "MAILER-DAEMON@mx.example.com",
            [f"bounces+{token}@plataforma.test"],
            on_the_wire(corpus("gmail_nosuchuser.eml", subscriber_id=subscriber_id)),
        )
    wait_for(lambda: state(subscriber_id)[0] == SubscriberStatus.BOUNCED)
    assert state(subscriber_id)[2]  # suppressed


def test_the_receiver_is_no_open_relay_and_refuses_oversize_mail(receiver: int) -> None:
    subscriber_id = reader()
    with smtplib.SMTP("127.0.0.1", receiver) as smtp:
        for stranger in (
            "someone@gmail.com",
            "bounces+x@other.example",
            "postmaster@plataforma.test",
        ):
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("spammer@example.net", [stranger], b"Subject: hi\r\n\r\nhello\r\n")
        token = make_verp_token(get_settings().secret_key, subscriber_id)
        huge = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 10_600
        with pytest.raises(smtplib.SMTPException):
            smtp.sendmail("a@example.net", [f"bounces+{token}@plataforma.test"], huge)
    # The receiver keeps running and still takes a real bounce afterwards.
    with smtplib.SMTP("127.0.0.1", receiver) as smtp:
        smtp.sendmail(
            "MAILER-DAEMON@mx.example.com",
            [f"bounces+{token}@plataforma.test"],
            on_the_wire(corpus("postfix_user_unknown.eml", subscriber_id=subscriber_id)),
        )
    wait_for(lambda: state(subscriber_id)[0] == SubscriberStatus.BOUNCED)


def cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=ROOT,
        env={**os.environ, "NEWSLETTER_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bounces_parse_prints_json_and_changes_nothing(clean_db: str, tmp_path: Path) -> None:
    subscriber_id = reader()
    delivery_id = sent_delivery(subscriber_id)
    sample = tmp_path / "bounce.eml"
    sample.write_bytes(
        corpus("postfix_user_unknown.eml", subscriber_id=subscriber_id, delivery_id=delivery_id)
    )
    result = cli("bounces", "parse", str(sample), "--json", database_url=clean_db)
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert parsed == {
        "kind": "hard",
        "recipients": [READER],
        "status": "5.1.1",
        "delivery": delivery_id,
    }
    assert state(subscriber_id)[0] == SubscriberStatus.ACTIVE and events() == 0


def test_bounces_process_reads_a_maildir(clean_db: str, tmp_path: Path) -> None:
    import mailbox

    subscriber_id = reader()
    maildir = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    maildir.add(corpus("exim_failed.eml", subscriber_id=subscriber_id))
    maildir.add(corpus("out_of_office.eml", subscriber_id=subscriber_id))
    result = cli("bounces", "process", str(tmp_path / "Maildir"), database_url=clean_db)
    assert result.returncode == 0, result.stderr
    assert "hard, suppressed" in result.stdout and "none, ignored" in result.stdout
    assert state(subscriber_id)[0] == SubscriberStatus.BOUNCED


def test_suppression_and_bounce_reset_commands(clean_db: str, tmp_path: Path) -> None:
    subscriber_id = reader()
    process(corpus("postfix_user_unknown.eml", subscriber_id=subscriber_id))
    assert cli("subscribers", "reset-bounces", READER, database_url=clean_db).returncode == 0
    status, _, suppressed, kinds = state(subscriber_id)
    assert status == SubscriberStatus.ACTIVE and not suppressed and kinds[-1] == "bounces_reset"
    assert cli("suppressions", "add", "spam@example.com", database_url=clean_db).returncode == 0
    listed = cli("suppressions", "list", database_url=clean_db).stdout
    assert "spam@example.com" in listed
    exported = tmp_path / "suppressions.csv"
    assert cli("suppressions", "export", "-o", str(exported), database_url=clean_db).returncode == 0
    assert "spam@example.com" in exported.read_text()
    assert cli("suppressions", "remove", "spam@example.com", database_url=clean_db).returncode == 0
    again = cli("suppressions", "remove", "spam@example.com", database_url=clean_db)
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1
    imported = tmp_path / "in.csv"
    imported.write_text("email,reason\nx@example.com,manual\nnot-an-address,manual\n")
    result = cli("suppressions", "import", str(imported), database_url=clean_db)
    assert "added 1" in result.stdout and "line 3" in result.stdout
