"""Confirmation, welcome and goodbye: built as digests are, signed, and sent over any relay.

Each was once assembled on a path of its own: never DKIM-signed, sent only through the
first relay's URL (two relays configured, and every confirmation failed), and telling
the reader a link expiry of "7 days" whatever the settings said.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from pathlib import Path

import dkim
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from newsletter.core import db
from newsletter.core.config import Settings
from newsletter.email.render import OutgoingMessage
from newsletter.sending.single import SingleOutcome, SingleStatus, send_single
from newsletter.sending.transport import SMTPTransport
from newsletter.subscribers import notices
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.newsletters import get_by_slug
from tests.conftest import SMTP_PORT, Mailbox, free_port
from tests.factories import add_reader, dkim_settings_and_dns

SELECTOR = "notices2026"
DKIM_DOMAIN = "plataforma.test"


@pytest.fixture
def dkim_settings(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Callable[..., bytes]]:
    """Settings read from an environment with NEWSLETTER_DKIM_* set, and the key's DNS."""
    return dkim_settings_and_dns(tmp_path, monkeypatch, selector=SELECTOR, domain=DKIM_DOMAIN)


def notice(kind: str, settings: Settings) -> OutgoingMessage:
    """The notice of this kind to a reader who may get it, built as the task builds it."""
    if kind == "confirmation":
        reader = add_reader(f"{kind}@example.com", confirmed=False, name="Inês")
    else:
        reader = add_reader(f"{kind}@example.com", name="Inês")
    with db.session_scope() as session:
        daily = [get_by_slug(session, "daily").id]
        if kind == "goodbye":
            subscribers.unsubscribe(session, subscriber_id=reader, source="test")
        message = build(session, kind, reader, daily, settings)
    assert message is not None
    return message


def build(
    session: Session, kind: str, reader: int, newsletter_ids: list[int], settings: Settings
) -> OutgoingMessage | None:
    if kind == "confirmation":
        return notices.confirmation_message(session, subscriber_id=reader, settings=settings)
    make = notices.welcome_message if kind == "welcome" else notices.goodbye_message
    return make(session, subscriber_id=reader, newsletter_ids=newsletter_ids, settings=settings)


@pytest.mark.parametrize("kind", ["confirmation", "welcome", "goodbye"])
def test_every_notice_is_dkim_signed_when_a_key_is_set(
    dkim_settings: tuple[Settings, Callable[..., bytes]], mailbox: Mailbox, kind: str
) -> None:
    settings, dns = dkim_settings
    message = notice(kind, settings)
    with SMTPTransport(f"smtp://127.0.0.1:{SMTP_PORT}") as smtp:
        # As a worker sends it: a message that needs no dot-stuffing goes as it is.
        smtp.send(
            envelope_from=message.envelope_from,
            recipient=message.recipient,
            data=message.data,
            wire_ready=message.wire_ready,
        )
    (received,) = mailbox.wait_for(message.recipient)

    assert received.data.startswith(b"DKIM-Signature:"), received.data[:300]
    assert dkim.verify(received.data, dnsfunc=dns)
    signature = str(received.message["DKIM-Signature"]).replace(" ", "")
    assert f"d={DKIM_DOMAIN};" in signature and f"s={SELECTOR};" in signature
    signed = set(re.search(r"h=([^;]+)", signature).group(1).lower().split(":"))  # type: ignore[union-attr]
    assert {"from", "to", "subject", "date", "message-id", "list-id"} <= signed
    if kind != "goodbye":  # the goodbye has no unsubscribe link to protect
        assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert {"list-unsubscribe", "list-unsubscribe-post"} <= signed
        # Nobody on the way may swap the link a reader's one click reaches.
        tampered = received.data.replace(b"/unsubscribe/", b"/unsubscribX/", 1)
        assert tampered != received.data
        assert not dkim.verify(tampered, dnsfunc=dns)


def test_notices_carry_no_signature_without_a_key(clean_db: str) -> None:
    message = notice("confirmation", Settings(dkim_key=""))
    assert b"DKIM-Signature" not in message.data


@pytest.mark.parametrize(
    ("language", "seconds", "phrase"),
    [
        ("en", 48 * 3600, "The link expires in 2 days."),
        ("en", 36 * 3600, "The link expires in 36 hours."),
        ("pt", 48 * 3600, "A ligação expira dentro de 2 dias."),
        ("zh", 30 * 60, "此链接30分钟内有效。"),
    ],
)
def test_the_confirmation_states_the_configured_expiry(
    clean_db: str, language: str, seconds: int, phrase: str
) -> None:
    settings = Settings(confirm_token_max_age_seconds=seconds)
    reader = add_reader("expiry@example.com", confirmed=False, language=language)
    with db.session_scope() as session:
        message = notices.confirmation_message(session, subscriber_id=reader, settings=settings)
    assert message is not None
    parsed = message_from_bytes(message.data, policy=policy.default)
    for kind in ("plain", "html"):
        part = parsed.get_body(preferencelist=(kind,))
        assert part is not None
        text = " ".join(str(part.get_content()).split())
        assert phrase in text, text
        assert "7 days" not in text and "7 dias" not in text and "7天" not in text


def test_a_goodbye_carries_the_same_headers_but_no_unsubscribe(clean_db: str) -> None:
    settings = Settings()
    message = message_from_bytes(notice("goodbye", settings).data, policy=policy.default)
    assert message["List-Id"] == "Plataforma <daily.plataforma.test>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@plataforma.test>")
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message


# --- sending one message: the verdicts --------------------------------------------------

A_MESSAGE = b"From: news@plataforma.test\r\nSubject: hello\r\n\r\nhello\r\n"


def send(recipient: str, settings: Settings, *, attempt: int = 0) -> SingleOutcome:
    message = OutgoingMessage(
        envelope_from="bounces+s1-x@plataforma.test",
        recipient=recipient,
        message_id="<1@plataforma.test>",
        data=A_MESSAGE,
    )
    return send_single(
        message, settings=settings, subscriber_id=1, attempt=attempt, what="a test notice"
    )


def test_a_notice_put_off_is_tried_again_later_and_given_up_after_max_attempts(
    mailbox: Mailbox,
) -> None:
    settings = Settings(retry_base_seconds=10, retry_max_seconds=100, max_attempts=3)
    mailbox.rcpt_replies["greylisted@example.com"] = ["451 4.7.1 Try again later"] * 3
    first = send("greylisted@example.com", settings)
    assert first.status == SingleStatus.RETRY
    assert first.error is not None and first.error.code == 451
    assert first.retry_in is not None and 7.5 <= first.retry_in <= 12.5
    second = send("greylisted@example.com", settings, attempt=1)
    assert second.status == SingleStatus.RETRY
    assert second.retry_in is not None and 15 <= second.retry_in <= 25
    last = send("greylisted@example.com", settings, attempt=2)
    assert last.status == SingleStatus.FAILED and last.retry_in is None
    assert mailbox.rcpt_replies["greylisted@example.com"] == []
    assert mailbox.to("greylisted@example.com") == []


def test_a_notice_refused_for_good_is_not_tried_again(mailbox: Mailbox) -> None:
    mailbox.rcpt_replies["dead@example.com"] = ["550 5.1.1 No such user"] * 2
    outcome = send("dead@example.com", Settings())
    assert outcome.status == SingleStatus.REFUSED and outcome.retry_in is None
    assert mailbox.rcpt_replies["dead@example.com"] == ["550 5.1.1 No such user"]  # asked once


def test_a_relay_out_of_reach_is_a_temporary_failure() -> None:
    outcome = send("ana@example.com", Settings(smtp_url=f"smtp://127.0.0.1:{free_port()}"))
    assert outcome.status == SingleStatus.RETRY


def test_a_notice_sent_says_so(mailbox: Mailbox) -> None:
    assert send("ana@example.com", Settings()).status == SingleStatus.SENT
    (received,) = mailbox.wait_for("ana@example.com")
    assert received.mail_from == "bounces+s1-x@plataforma.test"


# --- two relays, through a real worker --------------------------------------------------


@pytest.fixture(scope="module")
def second_relay() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture(scope="module")
def worker_on_two_relays(
    request: pytest.FixtureRequest,
    database_url: str,
    smtp_server: Mailbox,
    second_relay: tuple[Mailbox, int],
) -> subprocess.Popen[bytes]:
    """The real worker, started with NEWSLETTER_SMTP_URL naming two relays."""
    _, port = second_relay
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{SMTP_PORT}, smtp://127.0.0.1:{port}"
        )
        # The worker takes its environment when it starts; this process keeps its own.
        worker: subprocess.Popen[bytes] = request.getfixturevalue("worker")
    return worker


@pytest.fixture
def two_relays(
    clean_db: str,
    worker_on_two_relays: subprocess.Popen[bytes],
    mailbox: Mailbox,
    second_relay: tuple[Mailbox, int],
) -> tuple[Mailbox, Mailbox]:
    second, _ = second_relay
    second.clear()
    return mailbox, second


@pytest.fixture
def client(two_relays: tuple[Mailbox, Mailbox]) -> Iterator[TestClient]:
    from newsletter.web.app import create_app

    with TestClient(create_app(), base_url="http://newsletter.test") as test_client:
        yield test_client


def arrived(relays: tuple[Mailbox, Mailbox], addresses: list[str], timeout: float = 30.0) -> None:
    first, second = relays
    first.wait_until(lambda: all(first.to(a) or second.to(a) for a in addresses), timeout=timeout)


def test_with_two_relays_confirmations_still_go_and_use_both(
    client: TestClient, two_relays: tuple[Mailbox, Mailbox]
) -> None:
    addresses = [f"reader{n}@example.com" for n in range(4)]
    for address in addresses:
        assert client.post("/subscribe", json={"email": address}).status_code == 202
    arrived(two_relays, addresses)
    first, second = two_relays
    assert all(len(first.to(a)) + len(second.to(a)) == 1 for a in addresses)
    assert first.messages and second.messages, "both relays take their turn"
    confirmation = (first.messages + second.messages)[0].message
    assert confirmation["Subject"].startswith("Please confirm your subscription")


def test_a_confirmation_put_off_is_retried_on_each_relay_in_turn(
    client: TestClient, two_relays: tuple[Mailbox, Mailbox]
) -> None:
    first, second = two_relays
    # Each relay greylists it once: the first try and the retry (on the other relay) are
    # put off, the third try goes through.
    for relay in two_relays:
        relay.rcpt_replies["greylisted@example.com"] = ["451 4.7.1 Greylisted, try again"]
    assert client.post("/subscribe", json={"email": "greylisted@example.com"}).status_code == 202
    arrived(two_relays, ["greylisted@example.com"])
    assert first.rcpt_replies["greylisted@example.com"] == []
    assert second.rcpt_replies["greylisted@example.com"] == []
    assert len(first.to("greylisted@example.com") + second.to("greylisted@example.com")) == 1
