"""The tracked links of a digest: made once per variant, read back by the redirect.

A story link is `/r/<token>?c=<copy>`: the token (core/tokens.py) names the digest, the
variant, the story and, in a subject test, the arm; the copy key is random per copy and
stored nowhere else. For a reader who allowed per-reader records it is `?r=<token>`,
naming their delivery instead. The open pixel is `/o/<token>?…` the same way.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.analytics.hits import AGENT_CHARS, Hit
from newsletter.articles.store import reading_url
from newsletter.core.config import Settings
from newsletter.core.models import Article, LinkEventKind
from newsletter.core.tokens import (
    TokenError,
    make_copy_token,
    make_link_token,
    read_copy_token,
    read_link_token,
)

# The slot of a digest's template that each reader's copy fills with its copy key.
COPY_SLOT = "copy"
_ANONYMOUS_COPY = re.compile(r"[A-Za-z0-9_-]{8,16}")
# Apple's own network, from which Mail Privacy Protection fetches images.
_APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")
# How long the redirect trusts what it read of a story (its address, whether hidden).
DESTINATION_SECONDS = 10.0


def story_link(
    settings: Settings,
    *,
    digest_id: int,
    variant_id: int,
    article_id: int,
    arm: int | None,
    copy: str,
) -> str:
    """A story's tracked link in one variant; `copy` is the template's copy slot."""
    token = make_link_token(settings.secret_key, digest_id, variant_id, article_id, arm=arm)
    return f"{settings.base_url}/r/{token}?{copy}"


def pixel_link(
    settings: Settings, *, digest_id: int, variant_id: int, arm: int | None, copy: str
) -> str:
    token = make_link_token(settings.secret_key, digest_id, variant_id, arm=arm)
    return f"{settings.base_url}/o/{token}?{copy}"


def copy_value(
    settings: Settings, *, subscriber_id: int, tracking_refused: bool, delivery_id: int | None
) -> str:
    """What one reader's copy puts after a tracked link's `?`: their delivery, signed,
    when the publisher keeps per-reader records and they have not refused; else a random
    key, the same in all the copy's links and kept nowhere else."""
    if settings.track_readers and not tracking_refused and delivery_id is not None:
        return "r=" + make_copy_token(settings.secret_key, subscriber_id, delivery_id)
    return "c=" + secrets.token_urlsafe(9)


@dataclass(frozen=True)
class Copy:
    key: str
    subscriber_id: int | None = None
    delivery_id: int | None = None


def read_copy(settings: Settings, *, anonymous: str | None, reader: str | None) -> Copy:
    """The copy a request came from. A key we cannot read (a link cut short, pasted,
    forwarded without its query) counts as a copy of its own, named by nobody."""
    if reader:
        try:
            subscriber_id, delivery_id = read_copy_token(settings.secret_key, reader)
        except TokenError:
            pass
        else:
            return Copy(f"d:{delivery_id}", subscriber_id, delivery_id)
    if anonymous and _ANONYMOUS_COPY.fullmatch(anonymous):
        return Copy(f"c:{anonymous}")
    return Copy("c:" + secrets.token_urlsafe(9))


def make_hit(
    settings: Settings,
    token: str,
    *,
    copy: Copy,
    head: bool,
    agent: str,
    client: str | None,
    open_pixel: bool = False,
) -> Hit:
    """The hit a request makes; TokenError when we did not make its link (or a story
    link is used as a pixel, or the other way round)."""
    claims = read_link_token(settings.secret_key, token)
    if (claims.article_id is None) != open_pixel:
        raise TokenError("This link is not valid.")
    return Hit(
        kind=LinkEventKind.OPEN if open_pixel else LinkEventKind.CLICK,
        digest_id=claims.digest_id,
        variant_id=claims.variant_id,
        article_id=claims.article_id,
        arm=claims.arm,
        copy=copy.key,
        subscriber_id=copy.subscriber_id,
        delivery_id=copy.delivery_id,
        at=time.time(),
        head=head,
        agent=agent[:AGENT_CHARS],
        apple=_from_apple(client),
    )


def _from_apple(client: str | None) -> bool:
    try:
        return client is not None and ipaddress.ip_address(client) in _APPLE_NETWORK
    except ValueError:
        return False


@dataclass(frozen=True)
class Destination:
    url: str | None  # None: the story is gone
    hidden: bool


class Destinations:
    """Where each story's link leads, read from the database at most once every few
    seconds per story and process: the redirect answers from memory."""

    def __init__(self, settings: Settings, *, seconds: float = DESTINATION_SECONDS) -> None:
        self.settings = settings
        self.seconds = seconds
        self._known: dict[int, tuple[float, Destination]] = {}
        self._lock = threading.Lock()

    def known(self, article_id: int) -> Destination | None:
        found = self._known.get(article_id)
        if found is None or time.monotonic() - found[0] > self.seconds:
            return None
        return found[1]

    def read(self, session: Session, article_id: int) -> Destination:
        article = session.scalar(select(Article).where(Article.id == article_id))
        destination = (
            Destination(None, False)
            if article is None
            else Destination(reading_url(article, self.settings.base_url), article.hidden)
        )
        with self._lock:
            if len(self._known) > 10_000:  # a bound, against tokens for many old stories
                self._known.clear()
            self._known[article_id] = (time.monotonic(), destination)
        return destination
