"""Confirmation, welcome and goodbye: built as digests are, with the same headers and signature.

Each was once assembled on a path of its own, never DKIM-signed, and the confirmation
told the reader its link lasted "7 days" whatever the settings said.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from email import message_from_bytes, policy
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.orm import Session

from newsletter.core import db
from newsletter.core.config import Settings
from newsletter.digests.newsletters import get_by_slug
from newsletter.email.render import OutgoingMessage
from newsletter.sending.transport import SMTPTransport
from newsletter.subscribers import notices
from newsletter.subscribers import store as subscribers
from tests.conftest import SMTP_PORT, Mailbox
from tests.factories import add_reader

SELECTOR = "notices2026"
DKIM_DOMAIN = "plataforma.test"


@pytest.fixture
def dkim_settings(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Callable[..., bytes]]:
    """Settings read from an environment with NEWSLETTER_DKIM_* set, and the key's DNS."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    monkeypatch.setenv("NEWSLETTER_DKIM_KEY", str(key_file))
    monkeypatch.setenv("NEWSLETTER_DKIM_SELECTOR", SELECTOR)
    monkeypatch.setenv("NEWSLETTER_DKIM_DOMAIN", DKIM_DOMAIN)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        if name == f"{SELECTOR}._domainkey.{DKIM_DOMAIN}.".encode():
            return b"v=DKIM1; k=rsa; p=" + public
        return b""

    return Settings(), dns


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
        smtp.send(
            envelope_from=message.envelope_from, recipient=message.recipient, data=message.data
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
