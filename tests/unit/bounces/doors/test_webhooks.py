"""SES through SNS: a message's certificate is fetched only from Amazon's own SNS hosts, and
the subscription is confirmed only there, checked before anything reaches the database."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from newsletter.bounces.doors import webhooks
from newsletter.bounces.doors.webhooks import WebhookRefused
from newsletter.core.config import get_settings
from tests.providers import Amazon, Signer, ses_bounce, sns_message

READER = "leitora@example.com"
# The real ones, before the tests put local stand-ins for Amazon's servers in their place.
REAL_FETCH_CERTIFICATE = webhooks.fetch_certificate
REAL_CONFIRM_SUBSCRIPTION = webhooks.confirm_subscription


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com@evil.example/SimpleNotificationService-1.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
        "https://SNS.eu-west-1.amazonaws.com.evil.example/x.pem",
        "https://sns.eu-west-1.amazonaws.com\\@evil.example/x.pem",
        "https://sns.eu-west-1.amazonaws.com/../../evil/x.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.txt",
        "https://sns.eu-west-1.amazonaws.com/x.pem?redirect=https://evil.example",
        # An S3 bucket named "sns" is not Amazon's SNS.
        "https://sns.s3.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com\n/x.pem",
        # Any file on Amazon's host is not a signing certificate.
        "https://sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com/uploads/SimpleNotificationService-1.pem",
    ],
)
def test_ses_certificate_urls_other_than_amazons_are_refused_before_fetching(
    provider_secrets: None, amazon: Signer, sns: Amazon, url: str
) -> None:
    message = sns_message(amazon, ses_bounce(READER), cert_url=url)
    with pytest.raises(WebhookRefused) as refused:
        webhooks.ses_events(json.dumps(message).encode(), settings=get_settings())
    assert refused.value.status_code == 403
    assert sns.fetched == []
    # The default fetcher refuses them too, without touching the network.
    with pytest.raises(WebhookRefused) as refused:
        REAL_FETCH_CERTIFICATE(url)
    assert refused.value.status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-1.pem",
    ],
)
def test_ses_certificate_urls_of_amazon_regions_are_fetched(
    provider_secrets: None, amazon: Signer, sns: Amazon, url: str
) -> None:
    message = sns_message(amazon, ses_bounce(READER), cert_url=url)
    events = webhooks.ses_events(json.dumps(message).encode(), settings=get_settings())
    assert [event.email for event in events] == [READER]
    assert sns.fetched == [url]


def test_ses_default_confirmation_refuses_foreign_hosts() -> None:
    with pytest.raises(WebhookRefused) as refused:
        REAL_CONFIRM_SUBSCRIPTION("https://evil.example/?Action=ConfirmSubscription")
    assert refused.value.status_code == 403


def test_a_certificate_that_could_not_be_fetched_is_not_fetched_again_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each forged message naming an unreachable certificate made one more outgoing fetch.
    calls: list[str] = []

    def unreachable(url: str, **_: Any) -> httpx.Response:
        calls.append(url)
        raise httpx.ConnectError("unreachable")

    monkeypatch.setattr(httpx, "get", unreachable)
    url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-unreachable1.pem"
    for _ in range(5):
        with pytest.raises(WebhookRefused) as refused:
            REAL_FETCH_CERTIFICATE(url)
        assert refused.value.status_code == 503
    assert calls == [url]
