"""DKIM signatures (dkimpy) over the headers that matter, the unsubscribe headers included."""

from __future__ import annotations

from pathlib import Path

import dkim

from newsletter.core.config import Settings, SettingsError

# Gmail and Yahoo want List-Unsubscribe and List-Unsubscribe-Post signed, so that nobody
# on the way can swap the link a reader's one click reaches.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)


class DkimSigner:
    """Signs whole messages with one key, selector and domain."""

    def __init__(self, *, private_key: bytes, selector: str, domain: str) -> None:
        self.private_key = private_key
        self.selector = selector.encode()
        self.domain = domain.encode()

    def __call__(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header in front."""
        signature: bytes = dkim.sign(
            message,
            self.selector,
            self.domain,
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
        )
        return signature + message


def signer_from_settings(settings: Settings) -> DkimSigner | None:
    """The configured signer, or None when no DKIM key is set."""
    if not settings.dkim_key:
        return None
    if not settings.dkim_selector:
        raise SettingsError("NEWSLETTER_DKIM_SELECTOR must be set with NEWSLETTER_DKIM_KEY")
    key = settings.dkim_key.strip()
    if not key.startswith("-----BEGIN"):
        try:
            key = Path(key).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"cannot read the DKIM key {settings.dkim_key}: {exc}") from None
    return DkimSigner(
        private_key=key.encode(),
        selector=settings.dkim_selector,
        domain=settings.dkim_domain or settings.mail_domain,
    )
