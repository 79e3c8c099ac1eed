"""Newsletters: the lists readers subscribe to, and the one every install starts with."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.models import Newsletter

DEFAULT_SLUG = "daily"
DEFAULT_NAME = "Daily digest"


class UnknownNewsletter(LookupError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"There is no newsletter called {slug!r}.")
        self.slug = slug


def ensure_default_newsletter(session: Session, *, language: str, time_zone: str) -> Newsletter:
    """Create the `daily` newsletter if it is missing; leave it alone if it exists."""
    newsletter = session.scalar(select(Newsletter).where(Newsletter.slug == DEFAULT_SLUG))
    if newsletter is None:
        newsletter = Newsletter(
            slug=DEFAULT_SLUG, name=DEFAULT_NAME, language=language, time_zone=time_zone
        )
        session.add(newsletter)
        session.flush()
    return newsletter


def list_newsletters(session: Session) -> list[Newsletter]:
    return list(session.scalars(select(Newsletter).order_by(Newsletter.id)))


def get_by_slug(session: Session, slug: str) -> Newsletter:
    # A slug with control characters (a NUL, which PostgreSQL refuses in text) or longer
    # than any slug can be names no newsletter: no need to ask the database.
    if len(slug) > 64 or not slug.isprintable():
        raise UnknownNewsletter(slug[:64])
    newsletter = session.scalar(select(Newsletter).where(Newsletter.slug == slug))
    if newsletter is None:
        raise UnknownNewsletter(slug)
    return newsletter


def get_by_slugs(session: Session, slugs: list[str]) -> list[Newsletter]:
    """The newsletters named, in order, refusing any unknown one; none named means `daily`."""
    return [get_by_slug(session, slug) for slug in dict.fromkeys(slugs or [DEFAULT_SLUG])]
