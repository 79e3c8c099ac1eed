"""ESP webhooks over HTTP: a signed event changes the reader once; a forged one changes nothing.

Where Amazon's certificates may be fetched from is checked before any database, in
tests/unit/bounces/doors/test_webhooks.py; the providers' stand-ins are tests/providers.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import (
    BounceEvent,
    Delivery,
    DeliveryStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletter.subscribers import suppressions
from newsletter.web import webhooks as webhook_routes
from newsletter.web.app import create_app
from tests.conftest import ROOT
from tests.factories import add_reader
from tests.factories import sent_delivery as make_delivery
from tests.providers import (
    CERT_URL,
    MAILGUN_KEY,
    POSTMARK_PASSWORD,
    POSTMARK_USER,
    TOPIC,
    Amazon,
    Signer,
    our_message_id,
    ses_bounce,
    ses_complaint,
    sns_message,
    sns_time,
)

READER = "leitora@example.com"
OTHER = "outro@example.com"
SUBSCRIBE_URL = (
    "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425f004aed"
)


# --- the app, with the providers' secrets set and Amazon's servers stood in for --------


@pytest.fixture
def client(clean_db: str, provider_secrets: None, sns: Amazon) -> Iterator[TestClient]:
    app = create_app()
    if not any(getattr(route, "path", "").startswith("/webhooks/") for route in app.routes):
        app.include_router(webhook_routes.router)
    with TestClient(app) as test_client:
        yield test_client


# --- the readers and what happened to them -------------------------------------------


def reader(email: str = READER) -> int:
    """A reader we sent a digest to: the providers' events name its Message-ID."""
    subscriber_id = add_reader(email)
    make_delivery(subscriber_id, message_id=our_message_id(email))
    return subscriber_id


def unverified_events() -> list[tuple[str, str | None, str]]:
    with db.session_scope() as session:
        rows = session.execute(
            select(BounceEvent.source, BounceEvent.recipient, BounceEvent.kind)
            .where(BounceEvent.verified.is_(False))
            .order_by(BounceEvent.id)
        )
        return [(source, recipient, kind) for source, recipient, kind in rows]


@dataclass(frozen=True)
class ReaderState:
    status: str
    suppressed: bool
    subscriptions: frozenset[str]
    soft_bounces: int


def state(email: str = READER) -> ReaderState:
    with db.session_scope() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == email))
        assert subscriber is not None
        statuses = session.scalars(
            select(Subscription.status).where(Subscription.subscriber_id == subscriber.id)
        )
        return ReaderState(
            status=str(subscriber.status),
            suppressed=suppressions.is_listed(session, email),
            subscriptions=frozenset(str(s) for s in statuses),
            soft_bounces=subscriber.soft_bounce_count,
        )


ACTIVE = ReaderState("active", False, frozenset({SubscriptionStatus.SUBSCRIBED.value}), 0)


def bounced(email: str = READER) -> None:
    now = state(email)
    assert now.status == "bounced"
    assert now.suppressed


def complained(email: str = READER) -> None:
    now = state(email)
    assert now.status == "complained"
    assert now.suppressed
    assert now.subscriptions == {SubscriptionStatus.UNSUBSCRIBED.value}


def bounce_events() -> list[tuple[str, str | None, str]]:
    with db.session_scope() as session:
        rows = session.execute(
            select(BounceEvent.source, BounceEvent.event_key, BounceEvent.kind).order_by(
                BounceEvent.id
            )
        )
        return [(source, key, kind) for source, key, kind in rows]


def nothing_changed(*emails: str) -> None:
    assert bounce_events() == []
    for email in emails or (READER,):
        assert state(email) == ACTIVE


def sent_delivery(subscriber_id: int, message_id: str) -> int:
    return make_delivery(subscriber_id, message_id=message_id)


def delivery_status(delivery_id: int) -> str:
    with db.session_scope() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        return str(delivery.status)


def answer(response: Any) -> tuple[int, dict[str, Any]]:
    return response.status_code, response.json()


# --- Amazon SES through SNS ----------------------------------------------------------


def post_sns(client: TestClient, message: dict[str, str]) -> Any:
    return client.post(
        "/webhooks/ses",
        content=json.dumps(message),
        headers={
            "content-type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": message["Type"],
        },
    )


def test_ses_permanent_bounce_suppresses_the_reader_once(
    client: TestClient, amazon: Signer, sns: Amazon
) -> None:
    reader()
    message = sns_message(amazon, ses_bounce(READER))

    assert answer(post_sns(client, message)) == (200, {"recorded": 1, "duplicates": 0})
    bounced()
    assert sns.fetched == [CERT_URL]
    assert bounce_events() == [("ses", f"ses:{message['MessageId']}", "hard")]

    # SNS delivers at least once: the same message again counts for nothing.
    assert answer(post_sns(client, message)) == (200, {"recorded": 0, "duplicates": 1})
    assert len(bounce_events()) == 1


def test_ses_complaint_signed_with_sha256_unsubscribes_the_reader(
    client: TestClient, amazon: Signer
) -> None:
    reader()
    message = sns_message(amazon, ses_complaint(READER), version="2")
    assert answer(post_sns(client, message)) == (200, {"recorded": 1, "duplicates": 0})
    complained()


def test_ses_bounce_finds_the_reader_by_our_message_id_and_bounces_the_delivery(
    client: TestClient, amazon: Signer
) -> None:
    delivery_id = sent_delivery(reader(), "<d7.0a1b2c@plataforma.test>")
    message = sns_message(amazon, ses_bounce(READER, message_id="<d7.0a1b2c@plataforma.test>"))
    assert post_sns(client, message).status_code == 200
    bounced()
    assert delivery_status(delivery_id) == DeliveryStatus.BOUNCED


def test_ses_bounce_naming_another_address_than_the_deliverys_acts_on_nobody(
    client: TestClient, amazon: Signer
) -> None:
    # Our Message-ID, but an address that is not the one it was sent to (a forwarded
    # mailbox, or someone reusing a Message-ID they saw): kept unverified, nobody changes.
    reader()
    reader(OTHER)
    message = sns_message(amazon, ses_bounce(OTHER, message_id=our_message_id(READER)))
    assert post_sns(client, message).status_code == 200
    assert state() == ACTIVE and state(OTHER) == ACTIVE
    assert unverified_events() == [("ses", OTHER, "hard")]


def test_ses_bounce_of_several_recipients_is_one_event_each(
    client: TestClient, amazon: Signer
) -> None:
    reader()
    reader(OTHER)
    message = sns_message(amazon, ses_bounce(READER, OTHER))
    assert answer(post_sns(client, message)) == (200, {"recorded": 2, "duplicates": 0})
    bounced()
    # The mail was the one sent to READER: OTHER rides along on it and changes nothing.
    assert state(OTHER) == ACTIVE
    assert unverified_events() == [("ses", OTHER, "hard")]
    keys = [key for _, key, _ in bounce_events()]
    assert keys == [f"ses:{message['MessageId']}:0", f"ses:{message['MessageId']}:1"]


def test_ses_transient_bounce_is_scored_not_suppressed(client: TestClient, amazon: Signer) -> None:
    reader()
    message = sns_message(amazon, ses_bounce(READER, bounce_type="Transient"))
    assert post_sns(client, message).status_code == 200
    assert state() == ReaderState("active", False, ACTIVE.subscriptions, 1)
    assert bounce_events()[0][2] == "soft"


def test_ses_fields_with_a_nul_byte_are_stored_not_a_500(
    client: TestClient, amazon: Signer
) -> None:
    # PostgreSQL refuses NUL in text: the event answered 500 and was lost.
    reader()
    reader(OTHER)
    notification = json.loads(ses_bounce(READER, OTHER))
    notification["bounce"]["bouncedRecipients"][0]["diagnosticCode"] = "smtp; 550\x00 unknown"
    notification["bounce"]["bouncedRecipients"][1]["emailAddress"] = "outro\x00@example.com"
    message = sns_message(amazon, json.dumps(notification))
    assert answer(post_sns(client, message)) == (200, {"recorded": 2, "duplicates": 0})
    bounced()
    assert state(OTHER) == ACTIVE


def test_ses_notifications_that_are_no_bounce_change_nothing(
    client: TestClient, amazon: Signer
) -> None:
    reader()
    # What SES sends when the topic is set up, and a delivery notification.
    for text in (
        "Successfully validated SNS topic for Amazon SES notifications.",
        json.dumps({"notificationType": "Delivery", "mail": {}, "delivery": {}}),
    ):
        response = post_sns(client, sns_message(amazon, text))
        assert answer(response) == (200, {"recorded": 0, "duplicates": 0})
    nothing_changed()


def test_ses_subscription_confirmation_fetches_the_subscribe_url(
    client: TestClient, amazon: Signer, sns: Amazon
) -> None:
    message = sns_message(
        amazon,
        "You have chosen to subscribe to the topic.",
        message_type="SubscriptionConfirmation",
        SubscribeURL=SUBSCRIBE_URL,
        Token="2336412f37fb687f5d51e6e2425f004aed",
    )
    assert answer(post_sns(client, message)) == (200, {"recorded": 0, "duplicates": 0})
    assert sns.confirmed == [SUBSCRIBE_URL]


@pytest.mark.parametrize(
    ("scenario", "tamper", "expected"),
    [
        ("unsigned", lambda m: m.pop("Signature"), 401),
        ("message changed after signing", lambda m: m.update(Message=ses_bounce(OTHER)), 401),
        ("unknown signature version", lambda m: m.update(SignatureVersion="3"), 401),
        ("a topic that is not ours", lambda m: m.update(TopicArn=TOPIC + "-other"), 403),
        (
            "a certificate from a foreign host",
            lambda m: m.update(SigningCertURL="https://evil.example/sns.pem"),
            403,
        ),
        (
            # urlsplit refuses a netloc that NFKC would change: a refusal, not a 500.
            "a certificate URL with a full-width solidus",
            lambda m: m.update(
                SigningCertURL="https://sns.us-east-1.amazonaws.com\uff0f@evil.example/a.pem"
            ),
            403,
        ),
    ],
)
def test_ses_forged_or_foreign_messages_change_nothing(
    client: TestClient,
    amazon: Signer,
    sns: Amazon,
    scenario: str,
    tamper: Any,
    expected: int,
) -> None:
    reader()
    reader(OTHER)
    message = sns_message(amazon, ses_bounce(READER))
    tamper(message)
    response = post_sns(client, message)
    assert response.status_code == expected, scenario
    assert response.json()["detail"]
    nothing_changed(READER, OTHER)
    if expected == 403:
        assert sns.fetched == []


def test_ses_message_signed_by_another_key_changes_nothing(
    client: TestClient, impostor: Signer
) -> None:
    reader()
    response = post_sns(client, sns_message(impostor, ses_bounce(READER)))
    assert response.status_code == 401
    nothing_changed()


def test_ses_stale_message_changes_nothing(client: TestClient, amazon: Signer) -> None:
    reader()
    old = sns_time(datetime.now(UTC) - timedelta(hours=2))
    response = post_sns(client, sns_message(amazon, ses_bounce(READER), timestamp=old))
    assert response.status_code == 401
    nothing_changed()


def test_ses_confirmation_of_a_foreign_topic_or_url_is_not_fetched(
    client: TestClient, amazon: Signer, sns: Amazon
) -> None:
    foreign_topic = sns_message(
        amazon,
        "subscribe",
        message_type="SubscriptionConfirmation",
        topic="arn:aws:sns:eu-west-1:999999999999:someone-else",
        SubscribeURL=SUBSCRIBE_URL,
        Token="t",
    )
    foreign_url = sns_message(
        amazon,
        "subscribe",
        message_type="SubscriptionConfirmation",
        SubscribeURL="https://evil.example/?Action=ConfirmSubscription",
        Token="t",
    )
    assert post_sns(client, foreign_topic).status_code == 403
    assert post_sns(client, foreign_url).status_code == 403
    assert sns.confirmed == []


def test_ses_malformed_body_is_a_400(client: TestClient) -> None:
    reader()
    for body in ("{not json", "[]", '{"Type": "Notification"}', "[" * 50_000):
        response = client.post("/webhooks/ses", content=body)
        assert response.status_code == 400, body[:30]
        assert response.json()["detail"]
    nothing_changed()


# --- Mailgun -------------------------------------------------------------------------


def mailgun_payload(
    event_data: dict[str, Any],
    *,
    key: str = MAILGUN_KEY,
    timestamp: float | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    stamp = str(int(time.time() if timestamp is None else timestamp))
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": stamp, "token": token, "signature": signature},
        "event-data": event_data,
    }


def mailgun_event(
    email: str, *, event: str = "failed", severity: str = "permanent", event_id: str = ""
) -> dict[str, Any]:
    return {
        "event": event,
        "severity": severity,
        "id": event_id or secrets.token_urlsafe(16),
        "timestamp": time.time(),
        "recipient": email,
        "reason": "bounce",
        "message": {"headers": {"message-id": our_message_id(email).strip("<>"), "to": email}},
        "delivery-status": {
            "code": 550,
            "message": "5.1.1 The email account that you tried to reach does not exist",
            "description": "",
        },
    }


def test_mailgun_permanent_failure_suppresses_the_reader_once(client: TestClient) -> None:
    reader()
    event = mailgun_event(READER, event_id="mg-event-1")
    response = client.post("/webhooks/mailgun", json=mailgun_payload(event))
    assert answer(response) == (200, {"recorded": 1, "duplicates": 0})
    bounced()
    assert bounce_events() == [("mailgun", "mailgun:mg-event-1", "hard")]

    # Mailgun retries with a fresh signature: the event id makes it count once.
    response = client.post("/webhooks/mailgun", json=mailgun_payload(event))
    assert answer(response) == (200, {"recorded": 0, "duplicates": 1})
    assert len(bounce_events()) == 1


def test_mailgun_complaint_unsubscribes_and_temporary_failure_is_scored(
    client: TestClient,
) -> None:
    reader()
    reader(OTHER)
    complaint = mailgun_event(READER, event="complained")
    temporary = mailgun_event(OTHER, severity="temporary")
    delivered = mailgun_event(OTHER, event="delivered")
    for event in (complaint, temporary, delivered):
        assert client.post("/webhooks/mailgun", json=mailgun_payload(event)).status_code == 200
    complained()
    assert state(OTHER) == ReaderState("active", False, ACTIVE.subscriptions, 1)
    assert [kind for _, _, kind in bounce_events()] == ["complaint", "soft"]


@pytest.mark.parametrize(
    ("scenario", "payload"),
    [
        ("unsigned", lambda event: {"event-data": event}),
        ("signed with the wrong key", lambda event: mailgun_payload(event, key="key-wrong")),
        (
            "signature altered",
            lambda event: {
                **mailgun_payload(event),
                "signature": {
                    **mailgun_payload(event)["signature"],
                    "signature": "0" * 64,
                },
            },
        ),
        (
            "timestamp ten minutes old",
            lambda event: mailgun_payload(event, timestamp=time.time() - 600),
        ),
        (
            "timestamp from the future",
            lambda event: mailgun_payload(event, timestamp=time.time() + 600),
        ),
    ],
)
def test_mailgun_unsigned_forged_or_stale_requests_change_nothing(
    client: TestClient, scenario: str, payload: Any
) -> None:
    reader()
    response = client.post("/webhooks/mailgun", json=payload(mailgun_event(READER)))
    assert response.status_code == 401, scenario
    nothing_changed()


def test_mailgun_replayed_token_is_refused_even_for_another_event(client: TestClient) -> None:
    # Mailgun signs only timestamp and token: a captured signature must not carry a new event.
    reader()
    reader(OTHER)
    first = mailgun_payload(mailgun_event(READER))
    assert client.post("/webhooks/mailgun", json=first).status_code == 200
    replay = {**first, "event-data": mailgun_event(OTHER)}
    response = client.post("/webhooks/mailgun", json=replay)
    assert response.status_code == 401
    assert "replay" in response.json()["detail"]
    assert len(bounce_events()) == 1
    assert state(OTHER) == ACTIVE


# A second web process (or this one after a restart): it shares the database, nothing else.
SECOND_PROCESS = """
import json, sys
from fastapi.testclient import TestClient
from newsletter.web.app import create_app
from newsletter.web import webhooks
app = create_app()
if not any(getattr(r, "path", "").startswith("/webhooks/") for r in app.routes):
    app.include_router(webhooks.router)
with TestClient(app) as client:
    response = client.post("/webhooks/mailgun", content=sys.stdin.buffer.read())
print(json.dumps([response.status_code, response.json()]))
"""


def test_mailgun_replay_to_a_second_process_is_refused(clean_db: str, client: TestClient) -> None:
    reader()
    reader(OTHER)
    first = mailgun_payload(mailgun_event(READER))
    assert client.post("/webhooks/mailgun", json=first).status_code == 200
    replay = {**first, "event-data": mailgun_event(OTHER)}
    second = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS],
        input=json.dumps(replay).encode(),
        capture_output=True,
        cwd=ROOT,
        env={
            **os.environ,
            "NEWSLETTER_DATABASE_URL": clean_db,
            "NEWSLETTER_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
            "PYTHONPATH": str(ROOT),
        },
        timeout=60,
    )
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    status, body = json.loads(second.stdout.decode().strip().splitlines()[-1])
    assert status == 401 and "replay" in body["detail"]
    assert state(OTHER) == ACTIVE and len(bounce_events()) == 1


def test_mailgun_without_a_configured_key_refuses_everything(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader()
    monkeypatch.setitem(get_settings().__dict__, "mailgun_signing_key", "")
    payload = mailgun_payload(mailgun_event(READER), key="")
    assert client.post("/webhooks/mailgun", json=payload).status_code == 401
    nothing_changed()


def test_mailgun_malformed_body_is_a_400(client: TestClient) -> None:
    reader()
    assert client.post("/webhooks/mailgun", content=b"{oops").status_code == 400
    signed_without_event = mailgun_payload({})
    signed_without_event["event-data"] = "failed"
    assert client.post("/webhooks/mailgun", json=signed_without_event).status_code == 400
    nothing_changed()


# --- Postmark ------------------------------------------------------------------------


def postmark_bounce(
    email: str, *, bounce_type: str = "HardBounce", record_id: int = 0, message_id: str = ""
) -> Any:
    """A Postmark record; with `message_id`, our Message-ID as the sender put it in Metadata."""
    return {
        **({"Metadata": {"message-id": message_id}} if message_id else {}),
        "RecordType": "Bounce",
        "ID": record_id or secrets.randbelow(10**12),
        "Type": bounce_type,
        "TypeCode": 1,
        "MessageID": str(uuid.uuid4()),
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message.",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "news@plataforma.test",
        "BouncedAt": sns_time(),
        "Inactive": True,
    }


def postmark_complaint(email: str) -> Any:
    return {
        **postmark_bounce(email, bounce_type="SpamComplaint", message_id=our_message_id(email)),
        "RecordType": "SpamComplaint",
    }


POSTMARK_AUTH = (POSTMARK_USER, POSTMARK_PASSWORD)


def test_postmark_bounce_without_our_message_id_is_kept_unverified(client: TestClient) -> None:
    # Postmark's MessageID is its own: with only an address, the event proves nothing.
    reader()
    record = postmark_bounce(READER)
    response = client.post("/webhooks/postmark", json=record, auth=POSTMARK_AUTH)
    assert answer(response) == (200, {"recorded": 1, "duplicates": 0})
    assert state() == ACTIVE
    assert unverified_events() == [("postmark", READER, "hard")]


def test_postmark_hard_bounce_suppresses_the_reader_once(client: TestClient) -> None:
    reader()
    record = postmark_bounce(READER, record_id=4323372036854775, message_id=our_message_id(READER))
    response = client.post("/webhooks/postmark", json=record, auth=POSTMARK_AUTH)
    assert answer(response) == (200, {"recorded": 1, "duplicates": 0})
    bounced()
    assert bounce_events() == [("postmark", "postmark:4323372036854775", "hard")]
    response = client.post("/webhooks/postmark", json=record, auth=POSTMARK_AUTH)
    assert answer(response) == (200, {"recorded": 0, "duplicates": 1})
    assert len(bounce_events()) == 1


def test_postmark_spam_complaint_unsubscribes_and_soft_bounce_is_scored(
    client: TestClient,
) -> None:
    reader()
    reader(OTHER)
    for record in (
        postmark_complaint(READER),
        postmark_bounce(OTHER, bounce_type="SoftBounce", message_id=our_message_id(OTHER)),
        postmark_bounce(OTHER, bounce_type="AutoResponder", message_id=our_message_id(OTHER)),
        {"RecordType": "Delivery", "MessageID": "x", "Recipient": OTHER},
    ):
        response = client.post("/webhooks/postmark", json=record, auth=POSTMARK_AUTH)
        assert response.status_code == 200
    complained()
    assert state(OTHER).soft_bounces == 1
    assert [kind for _, _, kind in bounce_events()] == ["complaint", "soft"]


@pytest.mark.parametrize(
    ("scenario", "headers"),
    [
        ("no auth", {}),
        (
            "wrong password",
            {"authorization": "Basic " + base64.b64encode(b"postmark:nope").decode()},
        ),
        (
            "wrong user",
            {
                "authorization": "Basic "
                + base64.b64encode(f"someone:{POSTMARK_PASSWORD}".encode()).decode()
            },
        ),
        ("a bearer token", {"authorization": f"Bearer {POSTMARK_PASSWORD}"}),
        ("garbage", {"authorization": "Basic %%%"}),
    ],
)
def test_postmark_wrong_basic_auth_changes_nothing(
    client: TestClient, scenario: str, headers: dict[str, str]
) -> None:
    reader()
    response = client.post("/webhooks/postmark", json=postmark_bounce(READER), headers=headers)
    assert response.status_code == 401, scenario
    nothing_changed()


def test_postmark_without_configured_credentials_refuses_everything(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader()
    monkeypatch.setitem(get_settings().__dict__, "postmark_webhook_password", "")
    response = client.post(
        "/webhooks/postmark", json=postmark_bounce(READER), auth=(POSTMARK_USER, "")
    )
    assert response.status_code == 401
    nothing_changed()


def test_postmark_malformed_body_is_a_400(client: TestClient) -> None:
    reader()
    for body in (b"{oops", b'{"RecordType": "Bounce", "Type": "HardBounce"}'):
        response = client.post("/webhooks/postmark", content=body, auth=POSTMARK_AUTH)
        assert response.status_code == 400
    nothing_changed()


# --- SendGrid ------------------------------------------------------------------------


def sendgrid_post(
    client: TestClient,
    body: bytes,
    key: ec.EllipticCurvePrivateKey | None,
    *,
    signed_body: bytes | None = None,
    signed_at: float | None = None,
) -> Any:
    headers = {"content-type": "application/json"}
    if key is not None:
        timestamp = str(int(time.time() if signed_at is None else signed_at))
        signature = key.sign(
            timestamp.encode() + (body if signed_body is None else signed_body),
            ec.ECDSA(hashes.SHA256()),
        )
        headers["X-Twilio-Email-Event-Webhook-Signature"] = base64.b64encode(signature).decode()
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = timestamp
    return client.post("/webhooks/sendgrid", content=body, headers=headers)


def sendgrid_event(email: str, event: str, **extra: str) -> dict[str, Any]:
    return {
        "email": email,
        "timestamp": int(time.time()),
        "smtp-id": our_message_id(email),
        "event": event,
        "sg_event_id": secrets.token_urlsafe(16),
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **extra,
    }


def test_sendgrid_batch_bounces_and_unsubscribes_once(
    client: TestClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    reader()
    reader(OTHER)
    batch = [
        sendgrid_event(OTHER, "processed"),
        sendgrid_event(OTHER, "delivered"),
        sendgrid_event(READER, "bounce", type="bounce", status="5.1.1", reason="550 5.1.1 no"),
        sendgrid_event(OTHER, "spamreport"),
        # Still trying: the final outcome comes as a bounce, so this counts for nothing.
        sendgrid_event(READER, "deferred", response="451 try later"),
    ]
    body = json.dumps(batch).encode()
    assert answer(sendgrid_post(client, body, sendgrid_key)) == (
        200,
        {"recorded": 2, "duplicates": 0},
    )
    bounced()
    complained(OTHER)
    assert sorted(kind for _, _, kind in bounce_events()) == ["complaint", "hard"]

    assert answer(sendgrid_post(client, body, sendgrid_key)) == (
        200,
        {"recorded": 0, "duplicates": 2},
    )
    assert len(bounce_events()) == 2


def test_sendgrid_blocked_is_soft_and_dropped_bounced_address_is_hard(
    client: TestClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    reader()
    reader(OTHER)
    batch = [
        sendgrid_event(OTHER, "bounce", type="blocked", reason="554 blocked"),
        sendgrid_event(READER, "dropped", reason="Bounced Address"),
        sendgrid_event(OTHER, "dropped", reason="Unsubscribed Address"),
    ]
    response = sendgrid_post(client, json.dumps(batch).encode(), sendgrid_key)
    assert answer(response) == (200, {"recorded": 2, "duplicates": 0})
    bounced()
    assert state(OTHER).soft_bounces == 1


def test_sendgrid_unsigned_forged_or_foreign_key_changes_nothing(
    client: TestClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    reader()
    body = json.dumps([sendgrid_event(READER, "bounce", type="bounce")]).encode()
    harmless = json.dumps([sendgrid_event(READER, "delivered")]).encode()
    for scenario, response in (
        ("unsigned", sendgrid_post(client, body, None)),
        ("body changed", sendgrid_post(client, body, sendgrid_key, signed_body=harmless)),
        ("another key", sendgrid_post(client, body, ec.generate_private_key(ec.SECP256R1()))),
    ):
        assert response.status_code == 401, scenario
    garbled = client.post(
        "/webhooks/sendgrid",
        content=body,
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": "not base64!",
            "X-Twilio-Email-Event-Webhook-Timestamp": str(int(time.time())),
        },
    )
    assert garbled.status_code == 401
    nothing_changed()


def test_sendgrid_stale_or_future_signature_changes_nothing(
    client: TestClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    # A captured signed batch was good forever: the timestamp was never checked.
    reader()
    body = json.dumps([sendgrid_event(READER, "bounce", type="bounce")]).encode()
    for signed_at in (time.time() - 3600, time.time() + 3600):
        response = sendgrid_post(client, body, sendgrid_key, signed_at=signed_at)
        assert response.status_code == 401 and "timestamp" in response.json()["detail"]
    nothing_changed()


def test_sendgrid_malformed_body_is_a_400(
    client: TestClient, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    reader()
    for body in (b"[{oops", b'{"event": "bounce"}'):
        assert sendgrid_post(client, body, sendgrid_key).status_code == 400
    nothing_changed()
