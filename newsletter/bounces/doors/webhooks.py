"""Email providers' webhooks (SES via SNS, Mailgun, Postmark, SendGrid): verified, then read."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from newsletter.bounces.status import enhanced_status
from newsletter.core.config import Settings
from newsletter.core.models import BounceKind

log = logging.getLogger("newsletter.webhooks")

# SNS signs a message once and retries it unchanged; an hour covers the retry policies.
SNS_MAX_AGE = timedelta(hours=1)
# Mailgun's signature covers only timestamp and token, not the event: a captured one must
# not be reusable, so it is fresh for five minutes and good for one request.
MAILGUN_MAX_AGE_SECONDS = 5 * 60
# Mailgun's tokens are 50 characters; the replay store keeps up to this many.
MAILGUN_TOKEN_MAX = 128
FETCH_TIMEOUT_SECONDS = 10.0
# The bounce record's columns: a longer value would be refused by PostgreSQL.
EMAIL_MAX = 320
STATUS_MAX = 16

# Only Amazon's SNS endpoints, named by a region ("sns.eu-west-1.amazonaws.com"): the
# region must look like one, because "sns.s3.amazonaws.com" is somebody's S3 bucket.
SNS_HOST = re.compile(r"sns\.[a-z]{2,4}(?:-[a-z]+)+-\d{1,2}\.amazonaws\.com(?:\.cn)?")
# Amazon's signing certificates are all named so; nothing else on those hosts is fetched.
SNS_CERTIFICATE_PATH = re.compile(r"/SimpleNotificationService-[A-Za-z0-9]{1,64}\.pem")
# A certificate that could not be fetched is not asked for again for this long: forged
# messages naming it must not make us fetch once per request.
FAILED_FETCH_RETRY_SECONDS = 300.0
# SendGrid signs each request when it sends it: an older signature is a replay.
SENDGRID_MAX_AGE_SECONDS = 10 * 60

# The fields SNS signs, in this order, for each type of message (a missing Subject is
# left out of a Notification's string). A subscription's confirmation and its end are
# signed alike.
_SNS_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _SNS_CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _SNS_CONFIRMATION_FIELDS,
}
SES_BOUNCE_KINDS = {"Permanent": BounceKind.HARD, "Transient": BounceKind.SOFT}
MAILGUN_BOUNCE_KINDS = {"permanent": BounceKind.HARD, "temporary": BounceKind.SOFT}

POSTMARK_BOUNCE_KINDS = {
    "HardBounce": BounceKind.HARD,
    "BadEmailAddress": BounceKind.HARD,
    "SoftBounce": BounceKind.SOFT,
    "Transient": BounceKind.SOFT,
    "DnsError": BounceKind.SOFT,
    "SpamNotification": BounceKind.COMPLAINT,
    "SpamComplaint": BounceKind.COMPLAINT,
}
# "deferred" is left out on purpose: SendGrid reports every retry of a message it is still
# trying, and sends "bounce" (type "blocked") when it gives up; counting each deferral as a
# soft bounce would bounce a reader whose message was merely slow.
SENDGRID_BOUNCE_KINDS = {"bounce": BounceKind.HARD, "blocked": BounceKind.SOFT}


class WebhookRefused(Exception):
    """A webhook request that is not taken: unsigned, forged, stale, foreign or malformed."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class ProviderEvent:
    """One bounce or complaint as a provider reported it, for bounces.record_provider_event."""

    provider: str
    event_id: str
    kind: str
    email: str | None
    message_id: str | None
    status: str | None
    diagnostic: str | None
    raw: str


def ses_events(
    body: bytes,
    *,
    settings: Settings,
    fetch: Callable[[str], bytes] | None = None,
    confirm: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> list[ProviderEvent]:
    """An SNS message about SES mail, checked against Amazon's certificate, then read.

    Only topics in settings.ses_topic_arns are taken. A SubscriptionConfirmation of such a
    topic is confirmed by fetching its SubscribeURL (with `confirm`, default
    confirm_subscription); the certificate comes through `fetch` (default fetch_certificate).
    """
    message = _json_object(body)
    message_type = message.get("Type")
    # A list or an object is no type (and cannot be looked up: unhashable).
    if not isinstance(message_type, str) or message_type not in SNS_SIGNED_FIELDS:
        raise WebhookRefused(400, "This is not an SNS message.")
    for field in SNS_SIGNED_FIELDS[message_type]:
        if field == "Subject" and field not in message:
            continue
        if not isinstance(message.get(field), str):
            raise WebhookRefused(400, f"The SNS message has no {field}.")
    topic = message["TopicArn"]
    ours = getattr(settings, "ses_topic_arns", None) or []
    if topic not in ([ours] if isinstance(ours, str) else ours):
        log.warning("SNS message from a topic that is not ours: %.200s", topic)
        raise WebhookRefused(403, "This SNS topic is not one of ours.")
    _verify_sns_signature(message, message_type, fetch or fetch_certificate)
    _check_sns_timestamp(message["Timestamp"], now or datetime.now(UTC))

    if message_type == "SubscriptionConfirmation":
        subscribe_url = _amazon_url(message["SubscribeURL"], "subscription URL")
        (confirm or confirm_subscription)(subscribe_url)
        log.info("confirmed the SNS subscription to %s", topic)
        return []
    if message_type == "UnsubscribeConfirmation":
        log.warning("SNS topic %s no longer sends to this endpoint", topic)
        return []
    return _ses_notification(message, raw=body.decode("utf-8", "replace"))


# Takes a signature's token once, for every process (bounces.policy.claim_webhook_token):
# False when it was taken before.
ClaimToken = Callable[[str, int], bool]


def mailgun_events(
    body: bytes, *, settings: Settings, claim: ClaimToken, now: float | None = None
) -> list[ProviderEvent]:
    """A Mailgun webhook: HMAC-signed, fresh, and with a token never taken before.

    The token is claimed through `claim`, in the database shared by every web process, so
    a captured signature replayed with another event-data after a restart, or to another
    process, is refused.
    """
    payload = _json_object(body)
    signature = payload.get("signature")
    if not isinstance(signature, dict):
        raise WebhookRefused(401, "The webhook is not signed.")
    timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not (isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)):
        raise WebhookRefused(401, "The webhook's signature is incomplete.")
    key = str(getattr(settings, "mailgun_signing_key", "") or "")
    if not key:
        raise WebhookRefused(401, "Mailgun webhooks are not configured here.")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise WebhookRefused(401, "The webhook's signature is not valid.")
    now = time.time() if now is None else now
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise WebhookRefused(401, "The webhook's timestamp is not a number.") from None
    if abs(now - signed_at) > MAILGUN_MAX_AGE_SECONDS:
        raise WebhookRefused(401, "The webhook's timestamp is too old (or in the future).")
    if len(token) > MAILGUN_TOKEN_MAX or not claim(token, signed_at):
        raise WebhookRefused(401, "This webhook was already received (a replay).")

    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise WebhookRefused(400, "The webhook has no event-data.")
    kind = _mailgun_kind(data)
    if kind is None:
        return []
    event_id = data.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise WebhookRefused(400, "The event has no id.")
    delivery_status = _dict(data.get("delivery-status"))
    headers = _dict(_dict(data.get("message")).get("headers"))
    diagnostic = _text(delivery_status.get("message")) or _text(delivery_status.get("description"))
    return [
        ProviderEvent(
            provider="mailgun",
            event_id=event_id,
            kind=kind,
            email=_text(data.get("recipient"), EMAIL_MAX),
            message_id=_text(headers.get("message-id")),
            status=enhanced_status(diagnostic) or _text(delivery_status.get("code"), STATUS_MAX),
            diagnostic=diagnostic or _text(data.get("reason")),
            raw=body.decode("utf-8", "replace"),
        )
    ]


def postmark_events(
    body: bytes, *, authorization: str | None, settings: Settings
) -> list[ProviderEvent]:
    """A Postmark bounce or spam complaint webhook, behind HTTP basic auth.

    Postmark's MessageID is its own, not our Message-ID: only our Message-ID, when the
    message carried it as metadata (an X-PM-Metadata-message-id header), proves whose
    delivery it was; without it the event is kept unverified.
    """
    _check_basic_auth(
        authorization,
        user=str(getattr(settings, "postmark_webhook_user", "") or ""),
        password=str(getattr(settings, "postmark_webhook_password", "") or ""),
    )
    record = _json_object(body)
    kind = _postmark_kind(record)
    if kind is None:
        return []
    event_id = record.get("ID")
    if isinstance(event_id, bool) or not isinstance(event_id, int | str) or event_id == "":
        raise WebhookRefused(400, "The record has no ID.")
    return [
        ProviderEvent(
            provider="postmark",
            event_id=str(event_id),
            kind=kind,
            email=_text(record.get("Email"), EMAIL_MAX),
            message_id=_text(_dict(record.get("Metadata")).get("message-id"), 500),
            status=enhanced_status(_text(record.get("Details"))),
            diagnostic=_text(record.get("Details")) or _text(record.get("Description")),
            raw=body.decode("utf-8", "replace"),
        )
    ]


def sendgrid_events(
    body: bytes,
    *,
    signature: str | None,
    timestamp: str | None,
    settings: Settings,
    now: float | None = None,
) -> list[ProviderEvent]:
    """A batch of SendGrid events, signed with ECDSA P-256 over timestamp + body.

    The timestamp must be fresh (SENDGRID_MAX_AGE_SECONDS); a batch replayed within it
    changes nothing: every event is recorded once per sg_event_id.
    """
    if not signature or not timestamp:
        raise WebhookRefused(401, "The webhook is not signed.")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise WebhookRefused(401, "The webhook's timestamp is not a number.")
    if abs((time.time() if now is None else now) - int(timestamp)) > SENDGRID_MAX_AGE_SECONDS:
        raise WebhookRefused(401, "The webhook's timestamp is too old (or in the future).")
    key = _sendgrid_public_key(str(getattr(settings, "sendgrid_public_key", "") or ""))
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode() + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (binascii.Error, ValueError, InvalidSignature):
        raise WebhookRefused(401, "The webhook's signature is not valid.") from None
    batch = _json(body)
    if not isinstance(batch, list):
        raise WebhookRefused(400, "The body is not a list of events.")
    events = []
    for item in batch:
        if not isinstance(item, dict):
            log.warning("SendGrid event that is not an object: %.200r", item)
            continue
        kind = _sendgrid_kind(item)
        if kind is None:
            continue
        event_id = item.get("sg_event_id")
        if not isinstance(event_id, str) or not event_id:
            log.warning("SendGrid %s event without sg_event_id; skipped", item.get("event"))
            continue
        events.append(
            ProviderEvent(
                provider="sendgrid",
                event_id=event_id,
                kind=kind,
                email=_text(item.get("email"), EMAIL_MAX),
                message_id=_text(item.get("smtp-id")),
                status=_text(item.get("status"), STATUS_MAX),
                diagnostic=_text(item.get("reason")),
                raw=json.dumps(item, ensure_ascii=False),
            )
        )
    return events


def fetch_certificate(url: str) -> bytes:
    """Amazon's SNS signing certificate (PEM), downloaded once per process and URL.

    A download that failed is not tried again for FAILED_FETCH_RETRY_SECONDS.
    """
    url = _amazon_url(url, "certificate URL", certificate=True)
    with _failed_lock:
        failed_at = _failed_fetches.get(url)
    if failed_at is not None and time.monotonic() - failed_at < FAILED_FETCH_RETRY_SECONDS:
        raise WebhookRefused(503, "The SNS signing certificate could not be fetched.")
    try:
        return _download_certificate(url)
    except WebhookRefused:
        with _failed_lock:
            if len(_failed_fetches) >= 64:
                _failed_fetches.pop(next(iter(_failed_fetches)))
            _failed_fetches[url] = time.monotonic()
        raise


_failed_fetches: dict[str, float] = {}
_failed_lock = threading.Lock()


def confirm_subscription(url: str) -> None:
    """Confirm an SNS subscription: a GET of the SubscribeURL Amazon sent."""
    try:
        response = httpx.get(_amazon_url(url, "subscription URL"), timeout=FETCH_TIMEOUT_SECONDS)
        response.raise_for_status()
    except httpx.HTTPError as error:
        log.warning("could not confirm the SNS subscription: %s", error)
        raise WebhookRefused(503, "The SNS subscription could not be confirmed.") from None


# --- SES via SNS ---------------------------------------------------------------------


def _verify_sns_signature(
    message: dict[str, Any], message_type: str, fetch: Callable[[str], bytes]
) -> None:
    version = message.get("SignatureVersion")
    signature_text = message.get("Signature")
    if not isinstance(signature_text, str) or not signature_text:
        raise WebhookRefused(401, "The SNS message is not signed.")
    if version not in ("1", "2"):
        raise WebhookRefused(401, "The SNS message's SignatureVersion is not 1 or 2.")
    certificate_url = _amazon_url(
        message.get("SigningCertURL"), "certificate URL", certificate=True
    )
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRefused(401, "The SNS message's signature is not base64.") from None
    try:
        certificate = x509.load_pem_x509_certificate(fetch(certificate_url))
    except ValueError:
        raise WebhookRefused(401, "The SNS signing certificate cannot be read.") from None
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise WebhookRefused(401, "The SNS signing certificate holds no RSA key.")
    algorithm: hashes.HashAlgorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signed = "".join(
        f"{field}\n{message[field]}\n"
        for field in SNS_SIGNED_FIELDS[message_type]
        if field in message
    )
    try:
        public_key.verify(signature, signed.encode(), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise WebhookRefused(401, "The SNS message's signature is not valid.") from None


def _check_sns_timestamp(timestamp: str, now: datetime) -> None:
    try:
        signed_at = datetime.fromisoformat(timestamp)
    except ValueError:
        raise WebhookRefused(400, "The SNS message's Timestamp is not a time.") from None
    if signed_at.tzinfo is None:
        signed_at = signed_at.replace(tzinfo=UTC)
    if now - signed_at > SNS_MAX_AGE:
        raise WebhookRefused(401, "The SNS message is too old.")


def _amazon_url(value: object, what: str, *, certificate: bool = False) -> str:
    """The URL, if it is https on an SNS host of Amazon's and nothing else (no user, port...)."""
    if not isinstance(value, str) or any(c.isspace() or c == "\\" for c in value):
        raise WebhookRefused(403, f"The SNS {what} is not Amazon's.")
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a full-width solidus, which NFKC would turn into a "/"
        raise WebhookRefused(403, f"The SNS {what} is not Amazon's.") from None
    # The whole netloc must be the host: "sns...amazonaws.com@evil.test" or ":8443" fail.
    if parts.scheme != "https" or not SNS_HOST.fullmatch(parts.netloc) or parts.fragment:
        raise WebhookRefused(403, f"The SNS {what} is not Amazon's.")
    if certificate and (parts.query or not SNS_CERTIFICATE_PATH.fullmatch(parts.path)):
        raise WebhookRefused(403, f"The SNS {what} is not Amazon's.")
    return value


@lru_cache(maxsize=16)
def _download_certificate(url: str) -> bytes:
    # Failures raise, and lru_cache keeps only successes.
    try:
        response = httpx.get(url, timeout=FETCH_TIMEOUT_SECONDS)
        response.raise_for_status()
    except httpx.HTTPError as error:
        log.warning("could not fetch the SNS signing certificate %s: %s", url, error)
        raise WebhookRefused(503, "The SNS signing certificate could not be fetched.") from None
    return response.content


def _ses_notification(message: dict[str, Any], *, raw: str) -> list[ProviderEvent]:
    try:
        notification = json.loads(message["Message"])
    except (ValueError, RecursionError):
        notification = None
    if not isinstance(notification, dict):
        # SES's "Successfully validated SNS topic" test message is plain text.
        log.info("SNS notification that is no SES event: %.200s", message["Message"])
        return []
    notification_type = notification.get("notificationType") or notification.get("eventType")
    if notification_type == "Bounce":
        bounce = _required_dict(notification.get("bounce"), "bounce")
        kind = SES_BOUNCE_KINDS.get(str(bounce.get("bounceType")), BounceKind.SOFT)
        recipients = _required_list(bounce.get("bouncedRecipients"), "bouncedRecipients")
        feedback = None
    elif notification_type == "Complaint":
        complaint = _required_dict(notification.get("complaint"), "complaint")
        kind = BounceKind.COMPLAINT
        recipients = _required_list(complaint.get("complainedRecipients"), "complainedRecipients")
        feedback = _text(complaint.get("complaintFeedbackType"))
    else:
        return []
    message_id = _ses_message_id(_dict(notification.get("mail")))
    sns_id = message["MessageId"]
    events = []
    for index, recipient in enumerate(recipients):
        entry = _dict(recipient)
        events.append(
            ProviderEvent(
                provider="ses",
                event_id=sns_id if len(recipients) == 1 else f"{sns_id}:{index}",
                kind=kind,
                email=_text(entry.get("emailAddress"), EMAIL_MAX),
                message_id=message_id,
                status=_text(entry.get("status"), STATUS_MAX),
                diagnostic=(
                    feedback if kind == BounceKind.COMPLAINT else _text(entry.get("diagnosticCode"))
                ),
                raw=raw,
            )
        )
    return events


def _ses_message_id(mail: dict[str, Any]) -> str | None:
    """Our own Message-ID of the mail (SES's mail.messageId is SES's, not ours)."""
    common = _text(_dict(mail.get("commonHeaders")).get("messageId"))
    if common:
        return common
    headers = mail.get("headers")
    for header in headers if isinstance(headers, list) else []:
        header = _dict(header)
        if str(header.get("name", "")).lower() == "message-id":
            return _text(header.get("value"))
    return None


# --- Mailgun -------------------------------------------------------------------------


def _mailgun_kind(data: dict[str, Any]) -> str | None:
    event = data.get("event")
    if event == "failed":
        return MAILGUN_BOUNCE_KINDS.get(str(data.get("severity")))
    if event == "complained":
        return BounceKind.COMPLAINT
    return None


# --- Postmark and SendGrid -----------------------------------------------------------


def _check_basic_auth(authorization: str | None, *, user: str, password: str) -> None:
    if not user or not password:
        raise WebhookRefused(401, "Postmark webhooks are not configured here.")
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        raise WebhookRefused(401, "The webhook needs HTTP basic auth.")
    try:
        given_user, _, given_password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, ValueError):
        raise WebhookRefused(401, "The webhook's basic auth cannot be read.") from None
    # Both compared, always: how long it takes says nothing about which one was wrong.
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    if not (user_ok and password_ok):
        raise WebhookRefused(401, "The webhook's user or password is wrong.")


def _sendgrid_public_key(text: str) -> ec.EllipticCurvePublicKey:
    if not text.strip():
        raise WebhookRefused(401, "SendGrid webhooks are not configured here.")
    try:
        if "BEGIN PUBLIC KEY" in text:
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text.strip(), validate=True))
    except (binascii.Error, ValueError):
        log.error("NEWSLETTER_SENDGRID_PUBLIC_KEY is not a public key")
        raise WebhookRefused(401, "SendGrid webhooks are not configured here.") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        log.error("NEWSLETTER_SENDGRID_PUBLIC_KEY is not an elliptic curve key")
        raise WebhookRefused(401, "SendGrid webhooks are not configured here.")
    return key


def _postmark_kind(record: dict[str, Any]) -> str | None:
    record_type = record.get("RecordType")
    if record_type == "Bounce":
        return POSTMARK_BOUNCE_KINDS.get(str(record.get("Type")))
    if record_type == "SpamComplaint":
        return BounceKind.COMPLAINT
    return None


def _sendgrid_kind(item: dict[str, Any]) -> str | None:
    event = item.get("event")
    if event == "bounce":
        return SENDGRID_BOUNCE_KINDS.get(str(item.get("type") or "bounce"))
    if event == "dropped" and "bounced address" in str(item.get("reason", "")).lower():
        return BounceKind.HARD
    if event == "spamreport":
        return BounceKind.COMPLAINT
    return None


# --- reading JSON --------------------------------------------------------------------


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRefused(400, "The body is not JSON.") from None


def _json_object(body: bytes) -> dict[str, Any]:
    value = _json(body)
    if not isinstance(value, dict):
        raise WebhookRefused(400, "The body is not a JSON object.")
    return value


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _required_dict(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebhookRefused(400, f"The event has no {name}.")
    return value


def _required_list(value: object, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise WebhookRefused(400, f"The event has no {name} list.")
    return value


def _text(value: object, limit: int = 2000) -> str | None:
    """A string (or number) from the payload, trimmed to what the bounce record keeps."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value).strip()[:limit] or None
