"""Bounces and complaints through each door, and what they do to the reader and the digest."""

from __future__ import annotations

import json
import logging
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


def unverified() -> int:
    """Reports kept for the operator that proved no delivery of ours (and acted on nobody)."""
    with db.session_scope() as session:
        rows = session.execute(select(BounceEvent.verified, BounceEvent.subscriber_id)).all()
        assert all(row.verified == (row.subscriber_id is not None) for row in rows)
        return sum(1 for row in rows if not row.verified)


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
    sent_delivery(subscriber_id, message_id="<soft@plataforma.test>")
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
                    message_id="<soft@plataforma.test>",
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
    sent_delivery(subscriber_id, message_id="<first@plataforma.test>")
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
                message_id="<first@plataforma.test>",
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
    assert process(forged).action == "unverified"
    assert state(subscriber_id) == before and unverified() == 1


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


# --- forged reports (issue 14): an address alone proves nothing --------------------------


def forged_dsn(victim: str, *, action: str = "failed", status: str = "5.1.1") -> bytes:
    """A DSN anyone can write: it names the victim, but carries no token or Message-ID of ours."""
    return on_the_wire(
        f"""From: Mail Delivery System <MAILER-DAEMON@mx.attacker.example>
To: bounces+forged0000@plataforma.test
Subject: Undelivered Mail Returned to Sender
Message-ID: <{os.urandom(6).hex()}@mx.attacker.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Your message could not be delivered.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.attacker.example

Final-Recipient: rfc822; {victim}
Original-Recipient: rfc822; {victim}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 5.1.1 user unknown

--b--
""".encode()
    )


def forged_arf(victim: str, *, sender: str = "abuse@attacker.example", token: str = "") -> bytes:
    return on_the_wire(
        f"""From: {sender}
To: fbl@plataforma.test
Subject: complaint
Message-ID: <{os.urandom(6).hex()}@attacker.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="b"

--b
Content-Type: text/plain

This is an abuse report.

--b
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Forger/1.0
Version: 1
Original-Mail-From: <bounces+{token or "forged0000"}@plataforma.test>
Original-Rcpt-To: {victim}

--b
Content-Type: text/rfc822-headers

From: Plataforma <news@plataforma.test>
To: {victim}
Subject: Digest

--b--
""".encode()
    )


def mail_to_receiver(
    port: int, raw: bytes, rcpt: str = "bounces+forged0000@plataforma.test"
) -> None:
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.sendmail("MAILER-DAEMON@mx.attacker.example", [rcpt], raw)


def test_forged_reports_by_smtp_leave_every_reader_as_they_were(receiver: int) -> None:
    alice = add_reader("alice@example.com")
    bob = add_reader("bob@example.com")
    carol = add_reader("carol@example.com")
    for subscriber_id in (alice, bob, carol):
        sent_delivery(subscriber_id, message_id=f"<d{subscriber_id}@plataforma.test>")
    before = {s: state(s) for s in (alice, bob, carol)}
    mail_to_receiver(receiver, forged_dsn("alice@example.com"))
    mail_to_receiver(receiver, forged_arf("bob@example.com"), "bounces+forged0001@plataforma.test")
    for _ in range(3):
        mail_to_receiver(
            receiver, forged_dsn("carol@example.com", action="delayed", status="4.4.7")
        )
    wait_for(lambda: unverified() == 5)
    assert {s: state(s) for s in (alice, bob, carol)} == before
    with db.session_scope() as session:
        kept = session.scalars(select(BounceEvent).order_by(BounceEvent.id)).all()
        assert sorted(e.kind for e in kept) == ["complaint", "hard", "soft", "soft", "soft"]
        assert all(e.raw is None and e.delivery_id is None for e in kept)
        assert {e.recipient for e in kept} == {
            "alice@example.com",
            "bob@example.com",
            "carol@example.com",
        }


def test_a_genuine_bounce_by_verp_token_or_sent_message_id_still_acts(clean_db: str) -> None:
    by_token = add_reader("token@example.com")
    delivery = sent_delivery(by_token, message_id="<t@plataforma.test>")
    token = make_verp_token(get_settings().secret_key, by_token, delivery)
    dsn = forged_dsn("token@example.com").replace(b"forged0000", token.encode())
    outcome = process(dsn, [f"bounces+{token}@plataforma.test"])
    assert (outcome.action, outcome.subscriber_id, outcome.delivery_id) == (
        "suppressed",
        by_token,
        delivery,
    )

    by_message_id = add_reader("quoted@example.com")
    delivery = sent_delivery(by_message_id, message_id="<quoted.1@plataforma.test>")
    dsn = forged_dsn("quoted@example.com").replace(
        b"--b--",
        b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"Message-ID: <quoted.1@plataforma.test>\r\nTo: quoted@example.com\r\n\r\n--b--",
    )
    outcome = process(dsn)
    assert (outcome.action, outcome.delivery_id) == ("suppressed", delivery)
    assert state(by_message_id)[0] == SubscriberStatus.BOUNCED


def test_a_message_id_proves_only_a_delivery_sent_to_the_named_address(clean_db: str) -> None:
    alice = add_reader("alice@example.com")
    mallory = add_reader("mallory@example.com")
    sent_delivery(mallory, message_id="<mallory@plataforma.test>")
    with_quoted = forged_dsn("alice@example.com").replace(
        b"--b--",
        b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"Message-ID: <mallory@plataforma.test>\r\n\r\n--b--",
    )
    # Mallory's own Message-ID, quoted in a report that names Alice, proves nothing.
    assert process(with_quoted).action == "unverified"
    # A delivery that was only queued, never sent, is no proof either.
    queued_id = sent_delivery(alice, message_id="<queued@plataforma.test>")
    with db.session_scope() as session:
        queued = session.get(Delivery, queued_id)
        assert queued is not None
        queued.status, queued.sent_at = DeliveryStatus.QUEUED, None
    settings = get_settings()
    with db.session_scope() as session:
        outcome = bounces.record_provider_event(
            session,
            provider="ses",
            event_id="queued-1",
            kind="hard",
            settings=settings,
            email="alice@example.com",
            message_id="<queued@plataforma.test>",
        )
    assert outcome.action == "unverified"
    # A VERP token of ours that names another reader's delivery is inconsistent.
    token = make_verp_token(settings.secret_key, alice, queued_id + 1000)
    assert process(
        forged_dsn("alice@example.com"), [f"bounces+{token}@plataforma.test"]
    ).action == (
        "suppressed"  # the delivery does not exist: the token still names Alice
    )
    mallory_delivery = sent_delivery(mallory, message_id="<m2@plataforma.test>")
    token = make_verp_token(settings.secret_key, alice, mallory_delivery)
    before = state(mallory)
    assert process(forged_dsn("x@example.com"), [f"bounces+{token}@plataforma.test"]).action == (
        "unverified"
    )
    assert state(mallory) == before


def test_a_complaint_counts_only_from_a_configured_feedback_loop(clean_db: str) -> None:
    subscriber_id = reader()
    delivery = sent_delivery(subscriber_id)
    token = make_verp_token(get_settings().secret_key, subscriber_id, delivery)
    before = state(subscriber_id)
    # A genuine token, but the report comes from nobody the operator named.
    assert process(forged_arf(READER, token=token)).action == "unverified"
    assert state(subscriber_id) == before
    trusted = forged_arf(READER, sender="feedback@arf.mail.yahoo.com", token=token)
    assert process(trusted).action == "unsubscribed and suppressed"
    assert state(subscriber_id)[0] == SubscriberStatus.COMPLAINED


def test_a_nul_byte_in_a_bounce_loses_nothing(clean_db: str) -> None:
    # PostgreSQL refuses NUL in text: the bounce was lost with a DataError.
    subscriber_id = reader()
    delivery = sent_delivery(subscriber_id)
    token = make_verp_token(get_settings().secret_key, subscriber_id, delivery)
    dsn = forged_dsn(READER).replace(b"forged0000", token.encode())
    dsn = dsn.replace(b"user unknown", b"user\x00unknown").replace(b"--b--", b"\x00--b--")
    outcome = process(dsn, [f"bounces+{token}@plataforma.test"])
    assert outcome.action == "suppressed"
    with db.session_scope() as session:
        event = session.scalars(select(BounceEvent)).one()
        assert event.raw and "\x00" not in event.raw and "\x00" not in (event.diagnostic or "")
    # A forged one with a NUL in the address it names is kept, unverified.
    assert process(forged_dsn("x\x00y@example.com")).kind in ("hard", "none")


# --- the receiver's limits, and what it logs ---------------------------------------------


@pytest.fixture
def bare_receiver() -> Iterator[tuple[int, list[list[str]]]]:
    """The SMTP receiver handing messages to a list: its limits need no worker."""
    handed: list[list[str]] = []
    port = free_port()
    controller = start_receiver(
        get_settings(),
        lambda raw, rcpts: handed.append(rcpts),
        host="127.0.0.1",
        port=port,
        per_client_minute=3,
    )
    yield port, handed
    controller.stop()


def test_the_receiver_caps_recipients_size_and_messages_per_client(
    bare_receiver: tuple[int, list[list[str]]],
) -> None:
    port, handed = bare_receiver
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.ehlo()
        smtp.mail("MAILER-DAEMON@mx.example.com")
        answers = [
            smtp.rcpt(f"bounces+s{n}-0123456789abcdef0123@plataforma.test")[0] for n in range(60)
        ]
        assert answers[:50] == [250] * 50 and set(answers[50:]) == {452}
        smtp.rset()
        # 1.1 MB: no DSN is that large (the receiver took up to 10 MB, stored whole).
        big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1100
        with pytest.raises(smtplib.SMTPException):
            smtp.sendmail("a@example.net", ["bounces+s1-0123456789abcdef0123@plataforma.test"], big)
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for _ in range(3):
            smtp.sendmail(
                "a@example.net", ["bounces+s1-x@plataforma.test"], b"Subject: x\r\n\r\nx\r\n"
            )
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(
                "a@example.net", ["bounces+s1-x@plataforma.test"], b"Subject: x\r\n\r\nx\r\n"
            )
        assert refused.value.smtp_code == 451
    assert len(handed) == 3


def test_the_receiver_logs_no_token_and_no_address(
    bare_receiver: tuple[int, list[list[str]]], caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = bare_receiver
    token = make_verp_token(get_settings().secret_key, 42)
    with caplog.at_level(logging.DEBUG), smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.sendmail(
            "leitora@example.com",
            [f"unsubscribe+{token}@plataforma.test", "someone@elsewhere.example"],
            b"Subject: unsubscribe\r\n\r\n",
        )
    assert caplog.records, "the receiver logged nothing at all"
    assert token not in caplog.text and "leitora@example.com" not in caplog.text
    assert "someone@elsewhere" not in caplog.text


def test_only_a_verified_events_raw_is_kept_and_cut_short(clean_db: str) -> None:
    subscriber_id = reader()
    token = make_verp_token(get_settings().secret_key, subscriber_id)
    dsn = forged_dsn(READER).replace(b"forged0000", token.encode())
    dsn = dsn.replace(
        b"--b--", b"--b\r\nContent-Type: text/plain\r\n\r\n" + b"y" * 900_000 + b"\r\n--b--"
    )
    assert process(dsn, [f"bounces+{token}@plataforma.test"]).action == "suppressed"
    with db.session_scope() as session:
        raw = session.scalars(select(BounceEvent.raw)).one()
        assert raw is not None and len(raw) <= bounces.RAW_KEPT
