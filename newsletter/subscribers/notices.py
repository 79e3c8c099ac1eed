"""Messages to one reader about their subscription: confirmation and welcome."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.core.models import Newsletter, Subscriber
from newsletter.core.tokens import Purpose, make_token, make_verp_token
from newsletter.email.render import (
    MessageTemplate,
    OutgoingMessage,
    Recipient,
    make_message_id,
    render_email,
)
from newsletter.subscribers import eligibility
from newsletter.subscribers.store import get_subscriber


def confirmation_message(
    session: Session, *, subscriber_id: int, settings: Settings
) -> OutgoingMessage | None:
    """The double opt-in email, or None when the reader may not be asked (any more)."""
    subscriber = get_subscriber(session, subscriber_id)
    if not eligibility.can_be_asked_to_confirm(session, subscriber_id=subscriber.id):
        return None
    pending = [s.newsletter for s in subscriber.subscriptions if s.status == "pending"]
    token = make_token(settings.secret_key, Purpose.CONFIRM, subscriber.id)
    context = {
        "confirm_url": f"{settings.base_url}/confirm/{token}",
        "newsletter_names": _names(pending),
    }
    return _message(subscriber, "confirmation", context, settings=settings, newsletter=None)


def welcome_message(
    session: Session, *, subscriber_id: int, newsletter_ids: list[int], settings: Settings
) -> OutgoingMessage | None:
    """The welcome email after confirmation, or None if the reader has left already."""
    subscriber = get_subscriber(session, subscriber_id)
    if not eligibility.can_receive(session, subscriber_id=subscriber.id, newsletter_id=None):
        return None
    joined = [
        s.newsletter
        for s in subscriber.subscriptions
        if s.newsletter_id in newsletter_ids and s.status == "subscribed"
    ]
    if not joined:
        return None
    # The welcome's one-click unsubscribe leaves the newsletter it welcomes to.
    return _message(
        subscriber,
        "welcome",
        {"newsletter_names": _names(joined)},
        settings=settings,
        newsletter=joined[0],
    )


def goodbye_message(
    session: Session, *, subscriber_id: int, newsletter_ids: list[int], settings: Settings
) -> OutgoingMessage | None:
    """The one note that confirms an unsubscribe made on the web page, if the publisher wants it.

    It goes only to a reader who left the newsletters named and is otherwise in good
    standing (not bounced, complained or suppressed); it carries no unsubscribe link.
    """
    subscriber = get_subscriber(session, subscriber_id)
    left = [
        s.newsletter
        for s in subscriber.subscriptions
        if s.newsletter_id in newsletter_ids and s.status == "unsubscribed"
    ]
    if not left or not eligibility.can_be_told_goodbye(session, subscriber_id=subscriber.id):
        return None
    rendered = render_email(
        "goodbye",
        {
            "publisher": settings.publisher_name,
            "name": subscriber.name,
            "newsletter_names": _names(left),
            "signup_url": f"{settings.base_url}/",
        },
        language=subscriber.language,
    )
    prepared = MessageTemplate(
        rendered,
        from_name=settings.publisher_name,
        from_address=settings.from_address,
        headers=[("List-Id", f"{settings.publisher_name} <{left[0].slug}.{settings.mail_domain}>")],
    )
    return prepared.fill(
        Recipient(
            address=subscriber.email,
            name=subscriber.name,
            envelope_from=bounce_address(settings, subscriber.id),
            message_id=make_message_id(settings.mail_domain),
        )
    )


def reader_links(
    subscriber: Subscriber, newsletter: Newsletter | None, settings: Settings
) -> dict[str, str]:
    """The unsubscribe and preferences links every message to a reader carries."""
    newsletter_id = newsletter.id if newsletter else None
    unsubscribe = make_token(settings.secret_key, Purpose.UNSUBSCRIBE, subscriber.id, newsletter_id)
    preferences = make_token(settings.secret_key, Purpose.PREFERENCES, subscriber.id)
    return {
        "unsubscribe_url": f"{settings.base_url}/unsubscribe/{unsubscribe}",
        "unsubscribe_mailto": f"unsubscribe+{make_verp_token(settings.secret_key, subscriber.id)}"
        f"@{settings.mail_domain}",
        "preferences_url": f"{settings.base_url}/preferences/{preferences}",
    }


def _message(
    subscriber: Subscriber,
    template: str,
    context: Mapping[str, object],
    *,
    settings: Settings,
    newsletter: Newsletter | None,
) -> OutgoingMessage:
    links = reader_links(subscriber, newsletter, settings)
    rendered = render_email(
        template,
        {"publisher": settings.publisher_name, "name": subscriber.name, **links, **context},
        language=subscriber.language,
    )
    list_id = newsletter.slug if newsletter else "subscriptions"
    prepared = MessageTemplate(
        rendered,
        from_name=settings.publisher_name,
        from_address=settings.from_address,
        headers=list_headers(settings, list_id=list_id, unsubscribe=links),
    )
    return prepared.fill(
        Recipient(
            address=subscriber.email,
            name=subscriber.name,
            envelope_from=bounce_address(settings, subscriber.id),
            message_id=make_message_id(settings.mail_domain),
        )
    )


def list_headers(
    settings: Settings, *, list_id: str, unsubscribe: Mapping[str, str]
) -> list[tuple[str, str]]:
    """List-Id and the RFC 2369 / RFC 8058 unsubscribe headers every message carries."""
    return [
        ("List-Id", f"{settings.publisher_name} <{list_id}.{settings.mail_domain}>"),
        (
            "List-Unsubscribe",
            f"<{unsubscribe['unsubscribe_url']}>, <mailto:{unsubscribe['unsubscribe_mailto']}>",
        ),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]


def bounce_address(settings: Settings, subscriber_id: int, delivery_id: int | None = None) -> str:
    """The VERP envelope sender: bounces come back to an address that names the reader."""
    token = make_verp_token(settings.secret_key, subscriber_id, delivery_id)
    return f"bounces+{token}@{settings.mail_domain}"


def _names(newsletters: list[Newsletter]) -> str:
    return ", ".join(f"“{n.name}”" for n in newsletters)
