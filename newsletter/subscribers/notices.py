"""Messages to one reader about their subscription: confirmation, welcome, goodbye, and
the links to their data or to confirm its erasure.

What each says and who may get it is decided here; newsletter.email.builder assembles
them, as it does every email.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.core.models import Newsletter
from newsletter.core.tokens import Purpose, make_confirm_token, make_reader_token
from newsletter.email.builder import build_email
from newsletter.email.render import OutgoingMessage
from newsletter.subscribers import eligibility
from newsletter.subscribers.newsletters import newsletter_text
from newsletter.subscribers.store import get_subscriber


def confirmation_message(
    session: Session,
    *,
    subscriber_id: int,
    settings: Settings,
    newsletter_ids: list[int] | None = None,
) -> OutgoingMessage | None:
    """The double opt-in email, or None when the reader may not be asked (any more).

    It asks about the newsletters named that are still pending (every pending one when
    none are named), and its link confirms those and no other.
    """
    subscriber = get_subscriber(session, subscriber_id)
    if not eligibility.can_be_asked_to_confirm(session, subscriber_id=subscriber.id):
        return None
    pending = [
        s.newsletter
        for s in subscriber.subscriptions
        if s.status == "pending" and (newsletter_ids is None or s.newsletter_id in newsletter_ids)
    ]
    if not pending:
        return None
    token = make_confirm_token(settings.secret_key, subscriber.id, [n.id for n in pending])
    context = {
        "confirm_url": f"{settings.base_url}/confirm/{token}",
        "confirm_expires_in": settings.confirm_token_max_age_seconds,
        "newsletter_names": _names(pending, subscriber.language),
    }
    return build_email(
        "confirmation", context, subscriber=subscriber, newsletter=None, settings=settings
    )


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
    return build_email(
        "welcome",
        {"newsletter_names": _names(joined, subscriber.language)},
        subscriber=subscriber,
        newsletter=joined[0],
        settings=settings,
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
    return build_email(
        "goodbye",
        {
            "newsletter_names": _names(left, subscriber.language),
            "signup_url": f"{settings.base_url}/",
        },
        subscriber=subscriber,
        newsletter=left[0],
        settings=settings,
        unsubscribe=False,
    )


# The emails that carry a link to a reader's data (export) or to confirm its erasure
# (erase): their template, the link's purpose and the page it opens.
DATA_LINKS = {
    "export": ("data_export", Purpose.EXPORT, "my-data"),
    "erase": ("erasure", Purpose.ERASE, "erase"),
}


def data_link_message(
    session: Session, *, subscriber_id: int, action: str, settings: Settings
) -> OutgoingMessage | None:
    """The short-lived link a reader asked for on their preferences page, to download
    their data or confirm its erasure; None when mail cannot reach them.

    Sent to the address itself: whoever holds a preferences link (forwarded, leaked)
    still needs the mailbox to take the data or erase it. The link carries the reader's
    token version, so revoking their links kills it too.
    """
    subscriber = get_subscriber(session, subscriber_id)
    if not eligibility.can_be_told_goodbye(session, subscriber_id=subscriber.id):
        return None
    template, purpose, path = DATA_LINKS[action]
    token = make_reader_token(settings.secret_key, purpose, subscriber.id, subscriber.token_version)
    context = {
        "link_url": f"{settings.base_url}/{path}/{token}",
        "link_expires_in": settings.data_link_max_age_seconds,
    }
    return build_email(
        template,
        context,
        subscriber=subscriber,
        newsletter=None,
        settings=settings,
        unsubscribe=False,
    )


def _names(newsletters: list[Newsletter], language: str) -> str:
    """The newsletters as the reader's language names them: “Resumo diário”, “每日摘要”."""
    # Chinese lists with the enumeration comma.
    separator = "、" if language == "zh" else ", "
    return separator.join(f"“{newsletter_text(n, language).name}”" for n in newsletters)
