"""Addresses that are not ASCII: joão@exemplo.pt goes with SMTPUTF8 and a raw UTF-8 To:,
or not at all; ana@exémplo.pt goes as IDNA (xn--) to any relay.

The To: of such a message was once an RFC 2047 encoded word holding the whole
`Name <joão@…>`, an address no mail client can read, and a relay without SMTPUTF8 made
smtplib raise out of the sending code.
"""

from __future__ import annotations

import html
import io
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from email import message_from_string, policy
from pathlib import Path

import dkim
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.core import db
from newsletter.core.config import Settings, get_settings
from newsletter.core.i18n import translations
from newsletter.core.models import Delivery, DeliveryStatus, DigestState, SubscriberStatus
from newsletter.core.validation import NO_INTERNATIONAL_ADDRESSES
from newsletter.digests import lifecycle, reports
from newsletter.email.render import OutgoingMessage
from newsletter.sending.single import SingleStatus, send_single
from newsletter.subscribers import importing, notices, suppressions
from newsletter.subscribers import store as subscribers
from newsletter.tasks import jobs as tasks
from newsletter.web.admin import outbox
from newsletter.web.app import create_app
from tests.conftest import Mailbox, free_port
from tests.factories import (
    add_fresh_story,
    add_reader,
    dispatched_daily,
    dkim_settings_and_dns,
    send_page,
)
from tests.fakes import RecordingQueue

JOAO = "joão@exemplo.pt"
# Its mailbox name is ASCII: the domain alone goes as IDNA, no SMTPUTF8 needed.
ANA = "ana@exémplo.pt"
ANA_ON_THE_WIRE = "ana@xn--exmplo-cva.pt"
SELECTOR = "utf8mail"
DKIM_DOMAIN = "plataforma.test"


@pytest.fixture(scope="module")
def plain_relay() -> Iterator[tuple[Mailbox, int]]:
    """A relay that does not offer SMTPUTF8 (the test relay on SMTP_PORT does)."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture
def dkim_settings(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Callable[..., bytes]]:
    return dkim_settings_and_dns(tmp_path, monkeypatch, selector=SELECTOR, domain=DKIM_DOMAIN)


@pytest.fixture
def no_international_addresses(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installation whose relay lacks SMTPUTF8, and which says so."""
    monkeypatch.setenv("NEWSLETTER_INTERNATIONAL_ADDRESSES", "false")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("NEWSLETTER_INTERNATIONAL_ADDRESSES")
    get_settings.cache_clear()


def confirmation_to(
    email: str, settings: Settings, name: str = "João Conceição"
) -> OutgoingMessage:
    reader = add_reader(email, confirmed=False, name=name)
    with db.session_scope() as session:
        message = notices.confirmation_message(session, subscriber_id=reader, settings=settings)
    assert message is not None
    return message


def to_address(data: bytes) -> str:
    """To:'s address, read as a mail client reads an RFC 6532 message (UTF-8 headers)."""
    message = message_from_string(data.decode("utf-8"), policy=policy.default)
    (address,) = message["To"].addresses
    return str(address.addr_spec)


def to_line(data: bytes) -> bytes:
    """The raw To: header, unfolded."""
    head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
    (line,) = [line for line in head.split(b"\r\n") if line.lower().startswith(b"to:")]
    return line


def test_a_confirmation_to_a_non_ascii_mailbox_goes_smtputf8_with_a_raw_utf8_to(
    dkim_settings: tuple[Settings, Callable[..., bytes]], mailbox: Mailbox
) -> None:
    settings, dns = dkim_settings
    message = confirmation_to(JOAO, settings)
    outcome = send_single(message, settings=settings, subscriber_id=1, attempt=0, what="test")
    assert outcome.status == SingleStatus.SENT, outcome
    (received,) = mailbox.wait_for(JOAO)

    assert received.rcpt_tos == [JOAO]
    assert to_line(received.data) == "To: João Conceição <joão@exemplo.pt>".encode()
    assert b"=?" not in to_line(received.data)
    assert to_address(received.data) == JOAO
    # The signature covers the raw UTF-8 To: and still verifies.
    assert received.data.startswith(b"DKIM-Signature:")
    assert dkim.verify(received.data, dnsfunc=dns)


def test_a_relay_without_smtputf8_sends_nothing_and_says_why(
    clean_db: str, plain_relay: tuple[Mailbox, int]
) -> None:
    relay, port = plain_relay
    relay.clear()
    settings = Settings(smtp_url=f"smtp://127.0.0.1:{port}")
    message = confirmation_to(JOAO, settings)
    outcome = send_single(message, settings=settings, subscriber_id=1, attempt=0, what="test")
    # Refused for good, never retried, never sent mangled; and no bounce: the address is good.
    assert outcome.status == SingleStatus.REFUSED and outcome.retry_in is None
    assert outcome.error is not None and not outcome.error.bounce
    assert "SMTPUTF8" in str(outcome.error) and "NEWSLETTER_INTERNATIONAL_ADDRESSES" in str(
        outcome.error
    )
    assert relay.messages == []


def test_a_non_ascii_domain_goes_as_idna_to_a_relay_without_smtputf8(
    clean_db: str, plain_relay: tuple[Mailbox, int]
) -> None:
    relay, port = plain_relay
    relay.clear()
    settings = Settings(smtp_url=f"smtp://127.0.0.1:{port}")
    message = confirmation_to(ANA, settings, name="Ana")
    assert send_single(
        message, settings=settings, subscriber_id=1, attempt=0, what="test"
    ).status == (SingleStatus.SENT)
    (received,) = relay.wait_for(ANA_ON_THE_WIRE)
    assert received.rcpt_tos == [ANA_ON_THE_WIRE]
    assert to_line(received.data) == f"To: Ana <{ANA_ON_THE_WIRE}>".encode()


def test_a_digest_to_a_non_ascii_mailbox_arrives_with_a_raw_utf8_to(
    clean_db: str, worker: subprocess.Popen[bytes], mailbox: Mailbox
) -> None:
    add_fresh_story()
    add_reader(JOAO, name="João")
    add_reader(ANA, name="Ana")
    with db.session_scope() as session:
        digest_id = lifecycle.create_digest(session, newsletter_slug="daily").id
    tasks.tick.delay()
    (received,) = mailbox.wait_for(JOAO, timeout=60)
    assert to_line(received.data) == "To: João <joão@exemplo.pt>".encode()
    assert to_address(received.data) == JOAO
    (idna,) = mailbox.wait_for(ANA_ON_THE_WIRE)
    assert to_line(idna.data) == f"To: Ana <{ANA_ON_THE_WIRE}>".encode()
    deadline = time.monotonic() + 60
    while True:
        with db.session_scope() as session:
            status = reports.digest_status(session, digest_id)
        if status["state"] == DigestState.SENT or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["state"] == DigestState.SENT and status["counts"]["sent"] == 2, status


def test_a_digest_through_a_relay_without_smtputf8_fails_that_delivery_only(
    clean_db: str, plain_relay: tuple[Mailbox, int]
) -> None:
    relay, port = plain_relay
    relay.clear()
    add_fresh_story()
    joao = add_reader(JOAO)
    add_reader("rita@example.com")
    digest_id, page = dispatched_daily()
    outcome = send_page(
        digest_id, page, claimant="test-no-smtputf8", relay=f"smtp://127.0.0.1:{port}"
    )

    assert (outcome.sent, outcome.failed, outcome.bounced, outcome.retry) == (1, 1, 0, [])
    assert [m.rcpt_tos for m in relay.messages] == [["rita@example.com"]]
    with db.session_scope() as session:
        delivery = session.scalars(select(Delivery).where(Delivery.subscriber_id == joao)).one()
        assert delivery.status == DeliveryStatus.FAILED
        assert "SMTPUTF8" in (delivery.last_error or "")
        # Not the reader's fault: still subscribed, not on the suppression list.
        assert subscribers.get_subscriber(session, joao).status == SubscriberStatus.ACTIVE
        assert not suppressions.is_listed(session, JOAO)


def test_without_international_addresses_signup_and_import_refuse_them_in_words(
    clean_db: str, no_international_addresses: None
) -> None:
    with TestClient(create_app(queue=RecordingQueue())) as client:
        refused = client.post("/subscribe", data={"email": JOAO}, headers={"accept": "text/html"})
        as_json = client.post("/subscribe", json={"email": JOAO})
        taken = client.post("/subscribe", json={"email": ANA})
    assert refused.status_code == 422
    assert "letters other than A to Z before the @-sign" in refused.text
    # A reader who reads Portuguese or Chinese is told the same, in their language: not
    # that a good address is wrong.
    for language in ("pt", "zh"):
        with TestClient(create_app(queue=RecordingQueue())) as client:
            asked = client.post(
                "/subscribe", data={"email": JOAO}, headers={"accept-language": language}
            )
        assert asked.status_code == 422
        said = translations(language).gettext(NO_INTERNATIONAL_ADDRESSES)
        assert said != NO_INTERNATIONAL_ADDRESSES and html.escape(said) in asked.text
    assert as_json.status_code == 422
    assert as_json.json() == {"detail": NO_INTERNATIONAL_ADDRESSES, "field": "email"}
    assert taken.status_code == 202

    csv = io.StringIO(f"email,name\n{JOAO},João\nrita@example.com,Rita\n")
    with db.session_scope() as session:
        report = importing.import_subscribers_csv(
            session, csv, default_language="pt", default_time_zone="Europe/Lisbon"
        )
    assert report.added == 1
    ((line, reason),) = report.refused
    assert line == 2 and NO_INTERNATIONAL_ADDRESSES in reason
    with db.session_scope() as session, pytest.raises(subscribers.UnknownSubscriber):
        subscribers.find_by_email(session, JOAO)


def test_the_outbox_shows_a_message_with_raw_utf8_headers(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sink keeps such a message as it came; the dashboard must read it, not stumble.
    var = tmp_path / "var"
    settings = get_settings().model_copy(update={"var_dir": var, "smtp_url": ""})
    monkeypatch.setattr(outbox, "get_settings", lambda: settings)
    message = confirmation_to(JOAO, settings)
    name = "20261204T080000-0123456789ab.eml"
    (var / "outbox").mkdir(parents=True)
    (var / "outbox" / name).write_bytes(
        b"Return-Path: <bounces@plataforma.test>\r\n" + message.data
    )
    with TestClient(create_app(), base_url="http://testserver") as client:
        form = client.get("/admin/login")
        match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert match
        client.post(
            "/admin/login",
            data={"token": settings.admin_token, "csrf_token": match.group(1), "next": "/admin"},
        )
        listing = client.get("/admin/outbox")
        page = client.get(f"/admin/outbox/{name}")
    assert listing.status_code == 200 and page.status_code == 200
    assert "João Conceição &lt;joão@exemplo.pt&gt;" in listing.text
    assert "João Conceição &lt;joão@exemplo.pt&gt;" in page.text
