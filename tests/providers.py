"""Stand-ins for the email service providers that post webhooks, for every tier's tests.

Amazon's signing key and the certificate server a webhook fetches it from, SNS messages
signed as Amazon signs them, SendGrid's key, and the secrets our settings hold for each
provider. A pytest plugin (tests/conftest.py loads it): its fixtures serve
tests/unit/bounces/doors/test_webhooks.py and tests/integration/test_webhooks.py alike.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.bounces.doors import webhooks
from newsletter.core.config import get_settings

TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
MAILGUN_KEY = "key-" + "7" * 32
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "hook-password-" + "9" * 16
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


@dataclass
class Signer:
    """An RSA key with its self-signed certificate, standing in for Amazon's."""

    key: rsa.RSAPrivateKey
    certificate: bytes


def make_signer() -> Signer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return Signer(key, certificate.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def amazon() -> Signer:
    return make_signer()


@pytest.fixture(scope="module")
def impostor() -> Signer:
    return make_signer()


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Amazon:
    """What the webhook fetched from "Amazon": certificates served, subscriptions confirmed."""

    certificate: bytes
    fetched: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)


@pytest.fixture
def sns(monkeypatch: pytest.MonkeyPatch, amazon: Signer) -> Amazon:
    """Amazon's servers cannot be reached here: the certificate and the confirmation are local."""
    fake = Amazon(amazon.certificate)

    def fetch(url: str) -> bytes:
        fake.fetched.append(url)
        return fake.certificate

    monkeypatch.setattr(webhooks, "fetch_certificate", fetch)
    monkeypatch.setattr(webhooks, "confirm_subscription", fake.confirmed.append)
    return fake


@pytest.fixture
def provider_secrets(
    monkeypatch: pytest.MonkeyPatch, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    # Set in the settings' own __dict__: this works whether or not the fields are declared.
    settings = get_settings()
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for name, value in {
        "ses_topic_arns": [TOPIC],
        "mailgun_signing_key": MAILGUN_KEY,
        "postmark_webhook_user": POSTMARK_USER,
        "postmark_webhook_password": POSTMARK_PASSWORD,
        "sendgrid_public_key": base64.b64encode(public).decode(),
    }.items():
        monkeypatch.setitem(settings.__dict__, name, value)


def sns_time(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sns_message(
    signer: Signer,
    message: str,
    *,
    message_type: str = "Notification",
    version: str = "1",
    topic: str = TOPIC,
    cert_url: str = CERT_URL,
    timestamp: str | None = None,
    message_id: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """An SNS message signed as Amazon signs it: the canonical fields, in order."""
    body = {
        "Type": message_type,
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": message,
        "Timestamp": timestamp or sns_time(),
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
        **extra,
    }
    fields = NOTIFICATION_FIELDS if message_type == "Notification" else CONFIRMATION_FIELDS
    canonical = "".join(f"{name}\n{body[name]}\n" for name in fields if name in body)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = signer.key.sign(canonical.encode(), padding.PKCS1v15(), algorithm)
    body["Signature"] = base64.b64encode(signature).decode()
    return body


def our_message_id(email: str) -> str:
    """The Message-ID of the digest a test sent to this address (tests/factories.sent_delivery)."""
    return f"<{email.partition('@')[0]}.digest@plataforma.test>"


def ses_bounce(*emails: str, bounce_type: str = "Permanent", message_id: str = "") -> str:
    """A bounce of our mail to the first address (its Message-ID, unless one is given)."""
    message_id = message_id or (our_message_id(emails[0]) if emails else "")
    return json.dumps(
        {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": email,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                    for email in emails
                ],
                "timestamp": sns_time(),
                "feedbackId": "0102018c-feedback",
            },
            "mail": {
                # SES's own id: never ours, never looked up.
                "messageId": "0102018c-ses-internal-id",
                "source": "news@plataforma.test",
                "destination": list(emails),
                "commonHeaders": {"messageId": message_id} if message_id else {},
            },
        }
    )


def ses_complaint(email: str, message_id: str = "") -> str:
    return json.dumps(
        {
            "notificationType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": email}],
                "complaintFeedbackType": "abuse",
                "timestamp": sns_time(),
                "feedbackId": "0102018c-complaint",
            },
            "mail": {
                "messageId": "0102018c-ses-internal-id",
                "headers": [{"name": "Message-ID", "value": message_id or our_message_id(email)}],
            },
        }
    )
