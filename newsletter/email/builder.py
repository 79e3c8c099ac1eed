"""The one builder of every email: confirmation, welcome, goodbye and digest alike.

An email is prepared once — Jinja in its language, CSS inlined, MIME laid out, headers
set — with slots where each reader's own parts go, and then filled in per reader: a
digest once per variant and each reader cheaply after that, a notice for its one reader.
Every message so carries the same headers (Message-ID, Date, List-Id, List-Unsubscribe
with HTTPS and mailto, List-Unsubscribe-Post, Auto-Submitted), the VERP envelope sender,
and a DKIM signature whenever NEWSLETTER_DKIM_KEY is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from newsletter.core.config import Settings
from newsletter.core.models import Newsletter, Subscriber
from newsletter.core.tokens import Purpose, make_reader_token, make_token
from newsletter.email.addresses import bounce_address, unsubscribe_address
from newsletter.email.dkim import signer_from_settings
from newsletter.email.render import (
    MessageTemplate,
    OutgoingMessage,
    Recipient,
    RenderedEmail,
    make_message_id,
    render_email,
    slot,
)


class Reader(Protocol):
    """What a reader's copy of a message needs of them: a Subscriber, or the few columns a
    batch loads of each of its hundreds of readers (digests.batch)."""

    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def token_version(self) -> int: ...


# A reader's own links, in every message they can leave with one click.
LINK_SLOTS = ("unsubscribe_url", "unsubscribe_mailto", "preferences_url")

# The List-Id of the messages about a subscription rather than one newsletter's.
SUBSCRIPTIONS_LIST = "subscriptions"


@dataclass(frozen=True)
class PreparedEmail:
    """An email rendered and laid out once, ready to be filled in for each reader."""

    rendered: RenderedEmail
    headers: list[tuple[str, str]]
    template: MessageTemplate

    def fill(self, recipient: Recipient) -> OutgoingMessage:
        return self.template.fill(recipient)


def build_email(
    name: str,
    context: Mapping[str, object],
    *,
    subscriber: Subscriber,
    newsletter: Newsletter | None,
    settings: Settings,
    unsubscribe: bool = True,
) -> OutgoingMessage:
    """One reader's email from templates/email/<name>/, in their language.

    `newsletter` is the one the message is about (its List-Id, and the newsletter its
    one-click unsubscribe leaves); None for messages about the whole subscription.
    Without `unsubscribe` the message carries no unsubscribe link or header (a goodbye).
    """
    prepared = prepare_email(
        name,
        {"name": subscriber.name, **context},
        language=subscriber.language,
        settings=settings,
        list_id=newsletter.slug if newsletter else SUBSCRIPTIONS_LIST,
        unsubscribe=unsubscribe,
        newsletter=newsletter,
    )
    return prepared.fill(
        reader_recipient(subscriber, newsletter=newsletter, settings=settings, links=unsubscribe)
    )


def prepare_email(
    name: str,
    context: Mapping[str, object],
    *,
    language: str,
    settings: Settings,
    list_id: str,
    unsubscribe: bool = True,
    newsletter: Newsletter | None = None,
) -> PreparedEmail:
    """Render templates/email/<name>/ once, with slots for each reader's links.

    The context may set a link to "" to leave it out of the body (a digest's web copy).
    """
    links = {key: slot(key) for key in LINK_SLOTS} if unsubscribe else {}
    rendered = render_email(
        name,
        {
            "publisher": settings.publisher_name,
            "postal_address": settings.postal_address,
            **links,
            **context,
        },
        language=language,
    )
    headers = list_headers(settings, list_id=list_id, unsubscribe=links or None)
    if newsletter is not None and newsletter.reply_to:
        headers.append(("Reply-To", newsletter.reply_to))
    if settings.postmark_webhook_user:
        # Postmark's webhooks name a message by Postmark's own id; our Message-ID comes back
        # only as metadata, and a bounce acts only on a Message-ID we sent (bounces.policy).
        headers.append(("X-PM-Metadata-message-id", slot("message_id")))
    template = MessageTemplate(
        rendered,
        from_name=(newsletter.from_name if newsletter else None) or settings.publisher_name,
        from_address=settings.from_address,
        headers=headers,
        signer=signer_from_settings(settings),
    )
    return PreparedEmail(rendered, headers, template)


def reader_recipient(
    subscriber: Reader,
    *,
    newsletter: Newsletter | None,
    settings: Settings,
    delivery_id: int | None = None,
    values: Mapping[str, str] | None = None,
    links: bool = True,
) -> Recipient:
    """A reader's own parts of a message: address, links, envelope sender, Message-ID.

    With a delivery, its id is in the VERP token and the Message-ID, so that a bounce
    names the very delivery that bounced.
    """
    message_id = make_message_id(settings.mail_domain, f"d{delivery_id}" if delivery_id else None)
    return Recipient(
        address=subscriber.email,
        name=subscriber.name,
        envelope_from=bounce_address(settings, subscriber.id, delivery_id),
        message_id=message_id,
        values={
            **(reader_links(subscriber, newsletter, settings) if links else {}),
            "message_id": message_id,
            **(values or {}),
        },
    )


def inert_recipient(
    address: str, settings: Settings, *, values: Mapping[str, str] | None = None
) -> Recipient:
    """A copy for someone who is no reader (an editor's test): no reader's links, and an
    envelope sender that names no reader, so that a bounce of it marks nobody."""
    message_id = make_message_id(settings.mail_domain)
    return Recipient(
        address=address,
        name="",
        envelope_from=settings.from_address,
        message_id=message_id,
        values={"message_id": message_id, **(values or {})},
    )


def reader_links(
    subscriber: Reader, newsletter: Newsletter | None, settings: Settings
) -> dict[str, str]:
    """The unsubscribe and preferences links every message to a reader carries."""
    newsletter_id = newsletter.id if newsletter else None
    unsubscribe = make_token(settings.secret_key, Purpose.UNSUBSCRIBE, subscriber.id, newsletter_id)
    preferences = make_reader_token(
        settings.secret_key, Purpose.PREFERENCES, subscriber.id, subscriber.token_version
    )
    return {
        "unsubscribe_url": f"{settings.base_url}/unsubscribe/{unsubscribe}",
        "unsubscribe_mailto": unsubscribe_address(settings, subscriber.id),
        "preferences_url": f"{settings.base_url}/preferences/{preferences}",
    }


def list_headers(
    settings: Settings, *, list_id: str, unsubscribe: Mapping[str, str] | None
) -> list[tuple[str, str]]:
    """List-Id, and the RFC 2369 / RFC 8058 unsubscribe headers when the reader can leave."""
    headers = [("List-Id", f"{settings.publisher_name} <{list_id}.{settings.mail_domain}>")]
    if unsubscribe is not None:
        headers += [
            (
                "List-Unsubscribe",
                f"<{unsubscribe['unsubscribe_url']}>, <mailto:{unsubscribe['unsubscribe_mailto']}>",
            ),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
    return headers
