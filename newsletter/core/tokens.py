"""Signed tokens for readers' links, each bound to one purpose and one subscriber."""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeGuard

from itsdangerous import (
    BadData,
    SignatureExpired,
    Signer,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_encode


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    # The short-lived links mailed to a reader who asked, on their preferences page, for
    # their data or for its erasure: only the mailbox's owner can follow them.
    EXPORT = "export"
    ERASE = "erase"


# Tokens of these purposes expire (read_token's max_age); the others last as long as what
# they name, for links in mail a reader may open months later.
EXPIRING = frozenset({Purpose.CONFIRM, Purpose.EXPORT, Purpose.ERASE})
# Links that open a reader's data carry the reader's token version: raising it (from the
# dashboard, or by erasure) makes every such link mailed before worthless. Unsubscribe
# links do not: a one-click unsubscribe works from any email ever sent (invariant 3), and
# all one can do with it is leave.
VERSIONED = frozenset({Purpose.PREFERENCES, Purpose.EXPORT, Purpose.ERASE})


class TokenError(ValueError):
    """A token that is malformed, tampered with, of another purpose, or expired."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class TokenClaims:
    subscriber_id: int
    newsletter_id: int | None
    # A confirm link's own: the newsletters it was sent for, and when it was made.
    newsletter_ids: tuple[int, ...] | None = None
    issued_at: datetime | None = None


# A confirmation names the newsletters pending for one address: a handful, never thousands.
MAX_CONFIRM_NEWSLETTERS = 100


def make_token(
    secret_key: str, purpose: Purpose, subscriber_id: int, newsletter_id: int | None = None
) -> str:
    """A URL-safe token; the purpose is the salt, so one purpose's token fails for another.

    Not for confirmation links, which name their newsletters: make_confirm_token.
    """
    if purpose is Purpose.CONFIRM:
        raise ValueError("a confirmation link names its newsletters: use make_confirm_token")
    payload = [subscriber_id] if newsletter_id is None else [subscriber_id, newsletter_id]
    return _dumps(secret_key, purpose, payload)


def make_confirm_token(secret_key: str, subscriber_id: int, newsletter_ids: Collection[int]) -> str:
    """The confirmation link's token, bound to the newsletters the email asks about: a
    newsletter someone adds to the pending address later is not confirmed by it."""
    if not newsletter_ids:
        raise ValueError("a confirmation names at least one newsletter")
    payload = [subscriber_id, sorted(set(newsletter_ids))]
    return str(_serializer(secret_key, Purpose.CONFIRM).dumps(payload))


def read_token(
    secret_key: str, purpose: Purpose, token: str, *, max_age: int | None = None
) -> TokenClaims:
    """The claims of a valid token; TokenError otherwise. Only confirm tokens expire."""
    payload, issued_at = _loads(_serializer(secret_key, purpose), token, max_age)
    if purpose is Purpose.CONFIRM:
        return _confirm_claims(payload, issued_at)
    if (
        not isinstance(payload, list)
        or not 1 <= len(payload) <= 2
        or not all(isinstance(part, int) and not isinstance(part, bool) for part in payload)
    ):
        raise TokenError("This link is not valid.")
    return TokenClaims(payload[0], payload[1] if len(payload) == 2 else None)


@dataclass(frozen=True)
class ReaderClaims:
    subscriber_id: int
    version: int


def make_reader_token(secret_key: str, purpose: Purpose, subscriber_id: int, version: int) -> str:
    """A token for a link that opens a reader's data, bound to their token version."""
    if purpose not in VERSIONED:
        raise ValueError(f"{purpose} links carry no token version")
    return _dumps(secret_key, purpose, {"s": subscriber_id, "v": version})


def read_reader_token(
    secret_key: str, purpose: Purpose, token: str, *, max_age: int | None = None
) -> ReaderClaims:
    """The reader and token version of a valid token; TokenError otherwise.

    A preferences token made before versions were (a bare [subscriber]) reads as version
    0: such links keep working until the reader's version is first raised.
    """
    if purpose not in VERSIONED:
        raise ValueError(f"{purpose} links carry no token version")
    payload, _ = _loads(_serializer(secret_key, purpose), token, max_age)
    if isinstance(payload, dict) and payload.keys() == {"s", "v"}:
        subscriber_id, version = payload["s"], payload["v"]
    elif purpose is Purpose.PREFERENCES and isinstance(payload, list) and len(payload) == 1:
        subscriber_id, version = payload[0], 0
    else:
        raise TokenError("This link is not valid.")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (subscriber_id, version)):
        raise TokenError("This link is not valid.")
    return ReaderClaims(subscriber_id, version)


def make_verp_token(secret_key: str, subscriber_id: int, delivery_id: int | None = None) -> str:
    """A token for the local part of a VERP address: lower-case, since relays may fold case."""
    body = f"s{subscriber_id}" if delivery_id is None else f"s{subscriber_id}d{delivery_id}"
    return f"{body}-{_verp_mac(secret_key, body)}"


@dataclass(frozen=True)
class VerpClaims:
    subscriber_id: int
    delivery_id: int | None


def read_verp_token(secret_key: str, token: str) -> VerpClaims:
    """The subscriber (and delivery) a VERP token names; TokenError if we did not make it."""
    body, _, mac = token.lower().rpartition("-")
    match = _VERP_BODY.fullmatch(body)
    if not match or not _same(mac, _verp_mac(secret_key, body)):
        raise TokenError("This bounce address was not made by us.")
    delivery = match.group(2)
    return VerpClaims(int(match.group(1)), int(delivery) if delivery else None)


@dataclass(frozen=True)
class LinkClaims:
    """What a story link or an open pixel of a digest names: never a reader."""

    digest_id: int
    variant_id: int
    article_id: int | None  # None: the open pixel
    arm: int | None = None  # a subject test's arm (0, 1) the copy was sent in


def make_link_token(
    secret_key: str,
    digest_id: int,
    variant_id: int,
    article_id: int | None = None,
    *,
    arm: int | None = None,
) -> str:
    """The token of a digest's tracked story link (`/r/`), or of its open pixel (`/o/`,
    no article): short, since a reader may see it, and made once per variant (and arm)."""
    parts = [digest_id, variant_id, article_id or 0] + ([] if arm is None else [arm])
    body = ".".join(str(part) for part in parts)
    return f"{body}.{_link_mac(secret_key, 'link', body)}"


def read_link_token(secret_key: str, token: str) -> LinkClaims:
    """The digest, variant, story and arm of a link we made; TokenError for any other."""
    body, _, mac = token.rpartition(".")
    match = _LINK_BODY.fullmatch(body)
    if not match or not _same(mac, _link_mac(secret_key, "link", body)):
        raise TokenError("This link is not valid.")
    digest, variant, article, arm = match.groups()
    return LinkClaims(
        int(digest), int(variant), int(article) or None, None if arm is None else int(arm)
    )


def make_copy_token(secret_key: str, subscriber_id: int, delivery_id: int) -> str:
    """The part of a tracked link that names one reader's copy: only in the mail of readers
    who allowed per-reader records (NEWSLETTER_TRACK_READERS)."""
    body = f"{subscriber_id}.{delivery_id}"
    return f"{body}.{_link_mac(secret_key, 'copy', body)}"


def read_copy_token(secret_key: str, token: str) -> tuple[int, int]:
    """The (subscriber, delivery) a copy token names; TokenError if we did not make it."""
    body, _, mac = token.rpartition(".")
    match = _COPY_BODY.fullmatch(body)
    if not match or not _same(mac, _link_mac(secret_key, "copy", body)):
        raise TokenError("This link is not valid.")
    return int(match.group(1)), int(match.group(2))


_LINK_BODY = re.compile(r"(\d{1,18})\.(\d{1,18})\.(\d{1,18})(?:\.([01]))?")
_COPY_BODY = re.compile(r"(\d{1,18})\.(\d{1,18})")


def _same(given: str, made: str) -> bool:
    """A MAC from a link compared with ours in constant time; compare_digest refuses
    non-ASCII text with a TypeError (a 500), so bytes are compared."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), made.encode())


def _link_mac(secret_key: str, purpose: str, body: str) -> str:
    # 96 bits: a forger must guess; a reader types none of it.
    digest = hmac.new(_link_key(secret_key, purpose), body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode()


@lru_cache(maxsize=8)
def _link_key(secret_key: str, purpose: str) -> bytes:
    return hashlib.sha256(f"newsletter-{purpose}".encode() + secret_key.encode()).digest()


@lru_cache(maxsize=16)
def _serializer(secret_key: str, purpose: Purpose) -> URLSafeSerializer | URLSafeTimedSerializer:
    # Built once: every digest makes three tokens per reader, and building derives a key.
    if purpose in EXPIRING:
        return URLSafeTimedSerializer(secret_key, salt=purpose.value)
    return URLSafeSerializer(secret_key, salt=purpose.value)


def _dumps(secret_key: str, purpose: Purpose, payload: list[int] | dict[str, int]) -> str:
    """The token of a payload of a few ids, as the purpose's serializer signs it.

    Every message carries an unsubscribe and a preferences token. For the purposes that
    do not expire, the serializer's work is done here with its own parts, less two costs
    a send pays per message: deriving the signing key again (done once, _signer), and
    trying zlib on a payload a few bytes long, which took half the time and saves a byte
    or two only for ids of long repeated digits. The serializer reads such a token as any
    other (an uncompressed payload is its plain case); for every other payload the token
    is the very one the serializer makes.
    """
    if purpose in EXPIRING:
        return str(_serializer(secret_key, purpose).dumps(payload))
    body = base64_encode(json.dumps(payload, separators=(",", ":")).encode())
    return _signer(secret_key, purpose).sign(body).decode()


@lru_cache(maxsize=16)
def _signer(secret_key: str, purpose: Purpose) -> Signer:
    """The purpose's serializer's signer, its key derived once."""
    made = _serializer(secret_key, purpose).make_signer()
    return Signer(
        made.derive_key(), key_derivation="none", digest_method=made.digest_method, sep=made.sep
    )


def _confirm_claims(payload: object, issued_at: datetime | None) -> TokenClaims:
    if isinstance(payload, list) and len(payload) == 1 and _is_id(payload[0]):
        # Signed by us before links named their newsletters: it could confirm whatever a
        # stranger added since. The reader signs up again for a link that names them.
        raise TokenError("This link has expired.", expired=True)
    if not isinstance(payload, list) or len(payload) != 2:
        raise TokenError("This link is not valid.")
    subscriber_id, newsletter_ids = payload
    if (
        not _is_id(subscriber_id)
        or not isinstance(newsletter_ids, list)
        or not 1 <= len(newsletter_ids) <= MAX_CONFIRM_NEWSLETTERS
        or not all(_is_id(n) for n in newsletter_ids)
    ):
        raise TokenError("This link is not valid.")
    ids = tuple(n for n in newsletter_ids if isinstance(n, int))
    return TokenClaims(subscriber_id, None, newsletter_ids=ids, issued_at=issued_at)


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _loads(
    serializer: URLSafeSerializer | URLSafeTimedSerializer, token: str, max_age: int | None
) -> tuple[Any, datetime | None]:
    """The payload, and when it was signed (for the tokens that expire)."""
    try:
        if isinstance(serializer, URLSafeTimedSerializer):
            payload, issued_at = serializer.loads(token, max_age=max_age, return_timestamp=True)
            return payload, issued_at
        return serializer.loads(token), None
    except SignatureExpired as exc:
        raise TokenError("This link has expired.", expired=True) from exc
    except BadData as exc:
        raise TokenError("This link is not valid.") from exc


_VERP_BODY = re.compile(r"s(\d{1,18})(?:d(\d{1,18}))?")


def _verp_mac(secret_key: str, body: str) -> str:
    return hmac.new(_verp_key(secret_key), body.encode(), hashlib.sha256).hexdigest()[:20]


@lru_cache(maxsize=4)
def _verp_key(secret_key: str) -> bytes:
    return hashlib.sha256(b"newsletter-verp" + secret_key.encode()).digest()
