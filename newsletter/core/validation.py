"""Checks on what readers and editors type, with messages a person understands."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError
from email_validator import validate_email as _validate_email

from newsletter.core.config import LANGUAGES, get_settings

MAX_NAME_LENGTH = 200
# What an erased reader's address becomes in text that is kept (see without_address).
ERASED_ADDRESS = "[erased address]"
MAX_TOPICS = 20
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_TOPIC = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class InvalidInput(ValueError):
    """Input refused, with the field it concerns and a sentence for a person."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def translatable(message: str) -> str:
    """Marks a refusal for the catalogs (`make messages` extracts `translatable(...)`): a
    page shows it in its reader's language (core.i18n.catalog_phrase), JSON and the CLI
    in English. Core's rules know no language; this only lets Babel find the words."""
    return message


# An address we are asked to mail, with a non-ASCII mailbox name, on an installation
# whose relay cannot carry one (NEWSLETTER_INTERNATIONAL_ADDRESSES=false).
NO_INTERNATIONAL_ADDRESSES = translatable(
    "We cannot send email to an address with letters other than A to Z before the @-sign "
    "(such as joão@…). Please use another address."
)


def clean_email(value: str, *, to_mail: bool = False) -> tuple[str, str]:
    """(address as normalised by email-validator, lower-cased key), or InvalidInput.

    With `to_mail` (a signup, an import), an address that needs SMTPUTF8 (a non-ASCII
    mailbox name) is refused when the installation says its relay cannot carry one; a
    non-ASCII domain alone goes as IDNA and is always taken (newsletter.email.render).
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("email", "Please enter your email address.")
    _refuse_control_characters("email", value)
    try:
        # No DNS: signups must not hang on a resolver, and tests run offline.
        checked = _validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput("email", f"That email address is not valid: {exc}") from None
    # RFC 5321 caps the local part at 64 octets; email-validator lets longer ones pass.
    if len(checked.local_part.encode()) > 64:
        raise InvalidInput("email", "That email address is too long before the @-sign.")
    if to_mail and checked.smtputf8 and not get_settings().international_addresses:
        raise InvalidInput("email", NO_INTERNATIONAL_ADDRESSES)
    return checked.normalized, checked.normalized.lower()


def email_hash(email_key: str, *, secret_key: str | None = None) -> str:
    """The address's keyed hash, as the suppression list keeps it (and all an erasure leaves).

    HMAC-SHA256, under a key of its own derived from the server's secret key (the
    process's, unless one is given), of the address's plain sha256: without the secret
    nobody can test a guessed address against the list, and a list kept as plain sha256
    (before migration 0012) is re-keyed without knowing its addresses. Changing the
    secret key changes every hash: `newsletter suppressions rekey` recomputes those whose
    address is known; an erased reader's cannot be, and stops matching.
    """
    key = _email_hash_key(secret_key if secret_key is not None else get_settings().secret_key)
    plain = hashlib.sha256(email_key.encode()).hexdigest()
    return hmac.new(key, plain.encode(), hashlib.sha256).hexdigest()


def without_address(text: str, email_key: str) -> str:
    """Text (a relay's reply, a bounce report) with every copy of the address in it, in
    any capitalisation, replaced: what an erasure leaves of a record about someone else."""
    if not email_key:
        return text
    return re.sub(re.escape(email_key), ERASED_ADDRESS, text, flags=re.IGNORECASE)


@lru_cache(maxsize=4)
def _email_hash_key(secret_key: str) -> bytes:
    # A key of its own: a hash kept in the database never helps forge a link or a cookie.
    return hmac.new(secret_key.encode(), b"suppression-hash", hashlib.sha256).digest()


def storable_text(value: str | None) -> str | None:
    """Outside text as PostgreSQL can keep it: a NUL (which it refuses in text) becomes U+FFFD."""
    return value.replace("\x00", "\ufffd") if value else value


def clean_text(field: str, value: str | None, *, max_length: int = MAX_NAME_LENGTH) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(field, f"The {field} must be text.")
    _refuse_control_characters(field, value)
    value = value.strip()
    if len(value) > max_length:
        raise InvalidInput(field, f"The {field} is too long (at most {max_length} characters).")
    return value


def clean_long_text(field: str, value: str | None, *, max_length: int) -> str:
    """Text of several lines (an editor's note): line breaks and tabs kept (CRLF read as
    LF), every other control character refused as in clean_text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(field, f"The {field} must be text.")
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    for line in value.split("\n"):
        _refuse_control_characters(field, line.replace("\t", " "))
    value = value.strip()
    if len(value) > max_length:
        raise InvalidInput(field, f"The {field} is too long (at most {max_length} characters).")
    return value


def clean_language(value: str | None, *, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise InvalidInput("language", "The language must be text.")
    language = value.strip().lower()
    if language not in LANGUAGES:
        choices = ", ".join(LANGUAGES)
        raise InvalidInput(
            "language", f"We do not offer the language {value!r}; choose one of {choices}."
        )
    return language


def clean_topics(values: Iterable[str] | str | None) -> list[str]:
    """Topic names, lower-cased and de-duplicated; a string is split on commas."""
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    if not isinstance(values, list | tuple):
        # JSON sends 5, true or 1.5 as readily as a list.
        raise InvalidInput(
            "topics", "The topics must be a list of names or a comma-separated string."
        )
    topics: list[str] = []
    for raw in values:
        if not isinstance(raw, str):
            raise InvalidInput("topics", "Each topic must be text.")
        _refuse_control_characters("topics", raw)
        topic = raw.strip().lower()
        if not topic:
            continue
        if not _TOPIC.match(topic):
            raise InvalidInput(
                "topics",
                f"{raw[:40]!r} is not a topic name (letters, digits and dashes, at most 40).",
            )
        if topic not in topics:
            topics.append(topic)
    if len(topics) > MAX_TOPICS:
        raise InvalidInput("topics", f"Choose at most {MAX_TOPICS} topics.")
    return topics


def clean_time_zone(value: str | None, *, default: str) -> str:
    """An IANA zone name this machine knows (default when none); clock.zone makes it a zone."""
    if not value:
        return default
    _refuse_control_characters("time zone", value)
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("time_zone", f"{value[:60]!r} is not a time zone we know.") from None
    return value.strip()


def clean_slugs(values: Iterable[str] | str | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    slugs = []
    for raw in values:
        if not isinstance(raw, str):
            raise InvalidInput("newsletters", "Each newsletter must be named by its slug.")
        _refuse_control_characters("newsletters", raw)
        if raw.strip():
            slugs.append(raw.strip().lower())
    return slugs


def refuse_lone_surrogates(value: object, field: str = "request") -> None:
    """InvalidInput if any text in `value` (a JSON document: strings, lists, objects, keys)
    holds half of a UTF-16 surrogate pair: JSON's \\ud800 escape decodes to one, and such a
    string cannot be stored, encoded for a database or sent as UTF-8."""
    pending: list[tuple[str, object]] = [(field, value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise InvalidInput(
                    where,
                    f"The {where} contains a lone surrogate (\\ud800-\\udfff): it is not text.",
                )
        elif isinstance(item, dict):
            for key, inner in item.items():
                name = key if isinstance(key, str) and not _SURROGATE.search(key) else where
                pending += [(where, key), (name if where == field else where, inner)]
        elif isinstance(item, list | tuple):
            pending += [(where, inner) for inner in item]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_control_characters(field: str, value: str) -> None:
    # CR/LF in a name would become a header injection once the name reaches a To: header.
    # Bidi overrides are refused too: they disguise what a name or address says.
    if any(
        unicodedata.category(char) in {"Cc", "Zl", "Zp"} or char in _BIDI_CONTROLS for char in value
    ):
        raise InvalidInput(field, f"The {field} contains control characters or line breaks.")
    refuse_lone_surrogates(value, field)
