"""Our own addresses that name a reader: the VERP bounce sender and the unsubscribe mailto.

`bounces+<token>@<domain>` is every message's envelope sender, so that a bounce names
its reader (and delivery); `unsubscribe+<token>@<domain>` is the mailto of
List-Unsubscribe. Both are made and read here; the token itself (an HMAC) is made and
checked in newsletter.core.tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from newsletter.core.config import Settings
from newsletter.core.tokens import make_verp_token


class AddressKind(StrEnum):
    """What mail to one of our reader addresses is: a bounce, or a mailed unsubscribe."""

    BOUNCES = "bounces"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True)
class ReaderAddress:
    """One of our addresses, read back: its kind and the (still unchecked) token it carries."""

    kind: AddressKind
    token: str


def bounce_address(settings: Settings, subscriber_id: int, delivery_id: int | None = None) -> str:
    """The VERP envelope sender: bounces come back to an address that names the reader."""
    token = make_verp_token(settings.secret_key, subscriber_id, delivery_id)
    return f"{AddressKind.BOUNCES}+{token}@{settings.mail_domain}"


def unsubscribe_address(settings: Settings, subscriber_id: int) -> str:
    """The address of List-Unsubscribe's mailto: mail to it unsubscribes the reader."""
    token = make_verp_token(settings.secret_key, subscriber_id)
    return f"{AddressKind.UNSUBSCRIBE}+{token}@{settings.mail_domain}"


def read_reader_address(address: str, *, mail_domain: str) -> ReaderAddress | None:
    """What an envelope recipient is, if it is one of our reader addresses; None otherwise.

    The token is not checked here: a forged one is refused where it is read
    (newsletter.core.tokens.read_verp_token), so that it can be logged as forged.
    """
    local, _, domain = address.strip().strip("<>").rpartition("@")
    if domain.lower() != mail_domain.lower():
        return None
    prefix, _, token = local.lower().partition("+")
    if not token or prefix not in _KINDS:
        return None
    return ReaderAddress(AddressKind(prefix), token)


def bounce_tokens_in(text: str) -> list[str]:
    """The VERP tokens of the bounce addresses a text quotes (a DSN, a returned header)."""
    return [token.lower() for token in _BOUNCE_ADDRESS_IN_TEXT.findall(text)]


_KINDS = frozenset(kind.value for kind in AddressKind)
# Any domain: a DSN may quote our address as a relay rewrote it.
_BOUNCE_ADDRESS_IN_TEXT = re.compile(
    rf"{AddressKind.BOUNCES}\+([a-z0-9][a-z0-9-]{{0,120}})@", re.IGNORECASE
)
