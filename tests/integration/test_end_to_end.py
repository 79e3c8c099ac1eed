"""The reader's whole path through a real Celery worker on Redis and a real SMTP server."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from newsletter.core import db
from newsletter.core.models import SubscriptionStatus
from newsletter.subscribers import store as subscribers
from tests.conftest import Mailbox

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def client(clean_db: str, worker: subprocess.Popen[bytes]) -> Iterator[TestClient]:
    from newsletter.web.app import create_app

    with TestClient(create_app(), base_url="http://newsletter.test") as test_client:
        yield test_client


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link(message: EmailMessage, path: str) -> str:
    match = re.search(rf"http://newsletter\.test(/{path}/[A-Za-z0-9_.\-]+)", text_part(message))
    assert match, f"no /{path}/ link in:\n{text_part(message)}"
    return match.group(1)


def test_signup_confirm_welcome_and_one_click_unsubscribe(
    client: TestClient, mailbox: Mailbox
) -> None:
    answer = client.post(
        "/subscribe", json={"email": "leitora@example.com", "name": "Inês", "language": "pt"}
    )
    assert answer.status_code == 202

    (confirmation,) = mailbox.wait_for("leitora@example.com")
    message = confirmation.message
    assert confirmation.mail_from.startswith("bounces+s") and confirmation.mail_from.endswith(
        "@plataforma.test"
    )
    assert message["To"] == "Inês <leitora@example.com>"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert "Inês" in text_part(message)

    confirmed = client.get(link(message, "confirm"))
    # In the reader's language, whatever the browser asks for.
    assert confirmed.status_code == 200 and "Subscrição confirmada" in confirmed.text

    welcome = mailbox.wait_for("leitora@example.com", count=2)[1].message
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https_link, mailto = re.findall(r"<([^>]+)>", welcome["List-Unsubscribe"])
    assert mailto.startswith("mailto:unsubscribe+")
    assert welcome["List-Id"].endswith("<daily.plataforma.test>")
    assert welcome["Message-ID"].endswith("@plataforma.test>")
    assert welcome["Auto-Submitted"] == "auto-generated"
    assert link(welcome, "unsubscribe") == urlsplit(https_link).path

    # What a mail client does for RFC 8058: a POST with exactly this body, no cookies.
    client.cookies.clear()
    gone = client.post(
        urlsplit(https_link).path,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert gone.status_code == 200
    with db.session_scope() as session:
        reader = subscribers.find_by_email(session, "leitora@example.com")
        assert [s.status for s in reader.subscriptions] == [SubscriptionStatus.UNSUBSCRIBED]
        assert [e.kind for e in reader.events] == [
            "signed_up",
            "confirmed",
            "unsubscribed",
        ]


def test_a_second_signup_within_ten_minutes_sends_no_second_confirmation(
    client: TestClient, mailbox: Mailbox
) -> None:
    for _ in range(3):
        assert client.post("/subscribe", json={"email": "rui@example.com"}).status_code == 202
    mailbox.wait_for("rui@example.com")
    # A later signup's message would have arrived by the time this one is processed.
    assert client.post("/subscribe", json={"email": "witness@example.com"}).status_code == 202
    mailbox.wait_for("witness@example.com")
    assert len(mailbox.to("rui@example.com")) == 1


def test_a_reader_who_leaves_before_the_welcome_is_sent_gets_none(
    client: TestClient, mailbox: Mailbox
) -> None:
    from newsletter.tasks import jobs as tasks

    with db.session_scope() as session:
        outcome = subscribers.subscribe(
            session,
            subscribers.SignupForm(email="brief@example.com"),
            source="test",
            confirmed=True,
            default_language="en",
            default_time_zone="Europe/Lisbon",
            confirmation_interval=timedelta(minutes=10),
        )
        assert outcome.subscriber_id is not None
        subscribers.unsubscribe(session, subscriber_id=outcome.subscriber_id, source="test")
    tasks.send_welcome.delay(outcome.subscriber_id, outcome.newly_confirmed)
    assert client.post("/subscribe", json={"email": "witness2@example.com"}).status_code == 202
    mailbox.wait_for("witness2@example.com")
    assert mailbox.to("brief@example.com") == []


def confirmed_reader(email: str) -> int:
    with db.session_scope() as session:
        outcome = subscribers.subscribe(
            session,
            subscribers.SignupForm(email=email, name="Zé", language="pt"),
            source="test",
            confirmed=True,
            default_language="en",
            default_time_zone="Europe/Lisbon",
            confirmation_interval=timedelta(minutes=10),
        )
    assert outcome.subscriber_id is not None
    return outcome.subscriber_id


@pytest.mark.parametrize("send_goodbye", [False, True])
def test_a_goodbye_follows_a_page_unsubscribe_only_when_the_publisher_wants_it(
    client: TestClient, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, send_goodbye: bool
) -> None:
    from newsletter.core.config import get_settings
    from newsletter.core.tokens import Purpose, make_token

    monkeypatch.setattr(get_settings(), "send_goodbye", send_goodbye)
    key = get_settings().secret_key
    by_page = confirmed_reader("page@example.com")
    by_client = confirmed_reader("client@example.com")
    page = client.post(
        f"/unsubscribe/{make_token(key, Purpose.UNSUBSCRIBE, by_page)}",
        data={"List-Unsubscribe": "One-Click"},
        headers={"accept": "text/html"},
    )
    one_click = client.post(
        f"/unsubscribe/{make_token(key, Purpose.UNSUBSCRIBE, by_client)}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert page.status_code == one_click.status_code == 200
    assert client.post("/subscribe", json={"email": "witness3@example.com"}).status_code == 202
    mailbox.wait_for("witness3@example.com")
    assert mailbox.to("client@example.com") == []  # a mail client's one-click: never a reply
    if send_goodbye:
        (goodbye,) = mailbox.wait_for("page@example.com")
        assert goodbye.message["Subject"].startswith("Cancelou a subscrição de")
        assert "List-Unsubscribe" not in goodbye.message
    else:
        assert mailbox.to("page@example.com") == []
