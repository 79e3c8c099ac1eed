"""One message sent on its own (a confirmation, a welcome, a goodbye), through fake relays:
the verdict on each reply, the relay each attempt takes, and what the log may say.

The same verdicts from a real SMTP server on loopback: tests/integration/test_notices.py.
"""

from __future__ import annotations

import logging

import pytest

from newsletter.core.config import Settings
from newsletter.email.render import OutgoingMessage
from newsletter.sending.single import SingleStatus, send_single
from newsletter.sending.transport import DeliveryError
from tests.fakes import FakeRelays

TWO_RELAYS = "smtp://a.example:587,smtp://b.example:587"
MESSAGE = OutgoingMessage(
    envelope_from="bounces+s1-x@plataforma.test",
    recipient="ana.maria@correio.pt",
    message_id="<1@plataforma.test>",
    data=b"From: news@plataforma.test\r\nSubject: hello\r\n\r\nhello\r\n",
)
PUT_OFF = DeliveryError(
    "451 4.7.1 <ana.maria@correio.pt>: try again later", code=451, permanent=False
)
REFUSED = DeliveryError("550 5.1.1 <ana.maria@correio.pt>: no such user", code=550, permanent=True)


def test_a_message_accepted_is_sent_once_through_the_readers_relay() -> None:
    relays = FakeRelays()
    outcome = send_single(
        MESSAGE,
        settings=Settings(smtp_url=TWO_RELAYS),
        subscriber_id=1,
        attempt=0,
        what="a confirmation",
        transport=relays,
    )
    assert (outcome.status, outcome.relay, outcome.error) == (
        SingleStatus.SENT,
        "smtp://b.example:587",
        None,
    )
    assert relays.accepted == [
        ("smtp://b.example:587", MESSAGE.envelope_from, MESSAGE.recipient, MESSAGE.data)
    ]


def test_a_message_put_off_is_tried_again_after_the_policys_delay_through_the_next_relay() -> None:
    settings = Settings(
        smtp_url=TWO_RELAYS, retry_base_seconds=10, retry_max_seconds=100, max_attempts=3
    )
    relays = FakeRelays(PUT_OFF)
    first = send_single(
        MESSAGE, settings=settings, subscriber_id=2, attempt=0, what="a welcome", transport=relays
    )
    assert first.status == SingleStatus.RETRY and first.error is PUT_OFF
    assert first.retry_in is not None and 7.5 <= first.retry_in <= 12.5
    second = send_single(
        MESSAGE, settings=settings, subscriber_id=2, attempt=1, what="a welcome", transport=relays
    )
    assert second.status == SingleStatus.SENT
    assert relays.sessions == ["smtp://a.example:587", "smtp://b.example:587"]
    assert [relay for relay, *_ in relays.accepted] == ["smtp://b.example:587"]


def test_a_message_refused_for_good_is_not_tried_again() -> None:
    relays = FakeRelays(REFUSED)
    outcome = send_single(
        MESSAGE,
        settings=Settings(smtp_url=TWO_RELAYS, max_attempts=3),
        subscriber_id=1,
        attempt=0,
        what="a goodbye",
        transport=relays,
    )
    assert (outcome.status, outcome.retry_in, outcome.error) == (
        SingleStatus.REFUSED,
        None,
        REFUSED,
    )
    assert relays.accepted == []


def test_a_message_put_off_on_its_last_attempt_is_given_up() -> None:
    settings = Settings(smtp_url=TWO_RELAYS, max_attempts=3)
    outcome = send_single(
        MESSAGE,
        settings=settings,
        subscriber_id=1,
        attempt=2,
        what="a confirmation",
        transport=FakeRelays(PUT_OFF),
    )
    assert (outcome.status, outcome.retry_in) == (SingleStatus.FAILED, None)


@pytest.mark.parametrize("refusal", [PUT_OFF, REFUSED], ids=["put-off", "refused"])
def test_the_log_names_the_reader_by_id_and_never_in_full(
    caplog: pytest.LogCaptureFixture, refusal: DeliveryError
) -> None:
    with caplog.at_level(logging.INFO, logger="newsletter.sending"):
        send_single(
            MESSAGE,
            settings=Settings(smtp_url=TWO_RELAYS, max_attempts=3),
            subscriber_id=7,
            attempt=0,
            what="a confirmation",
            transport=FakeRelays(refusal),
        )
    assert "a confirmation to subscriber 7" in caplog.text
    assert "an…@correio.pt" in caplog.text and "ana.maria" not in caplog.text
