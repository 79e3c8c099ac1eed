"""Newsletters: the lists readers subscribe to, their names in each language, and the one
every install starts with."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.core.config import LANGUAGES
from newsletter.core.models import Newsletter
from newsletter.core.validation import InvalidInput, clean_email, clean_text

DEFAULT_SLUG = "daily"
DEFAULT_NAME = "Daily digest"
# The default newsletter's name in the other languages, given when it is created.
DEFAULT_TRANSLATIONS = {"pt": {"name": "Resumo diário"}, "zh": {"name": "每日摘要"}}
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2000


class NewsletterText(NamedTuple):
    """What a reader is shown of a newsletter: its name and description, in their language."""

    name: str
    description: str


def newsletter_text(newsletter: Newsletter, language: str) -> NewsletterText:
    """A newsletter's name and description in `language`, as the editor gave them, each
    falling back to the newsletter's own (in its own language) when not given."""
    given = (newsletter.translations or {}).get(language) or {}
    return NewsletterText(
        name=given.get("name") or newsletter.name,
        description=given.get("description") or newsletter.description,
    )


def set_translations(
    newsletter: Newsletter,
    *,
    names: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> None:
    """Give the newsletter's name and/or description in some languages (an empty text
    removes that language's, which then falls back to the newsletter's own)."""
    translations = {lang: dict(texts) for lang, texts in (newsletter.translations or {}).items()}
    for field, given in (("name", names or {}), ("description", descriptions or {})):
        for language, text in given.items():
            if language not in LANGUAGES:
                raise InvalidInput(
                    field,
                    f"{language!r} is not one of the newsletter's languages "
                    f"({', '.join(LANGUAGES)}).",
                )
            clean = (
                clean_description(text)
                if field == "description"
                else clean_text(field, text, max_length=MAX_NAME_LENGTH)
            )
            texts = translations.setdefault(language, {})
            if clean:
                texts[field] = clean
            else:
                texts.pop(field, None)
    # A new dict, so that the JSON column is seen to change.
    newsletter.translations = {lang: texts for lang, texts in translations.items() if texts}


def clean_description(description: str | None) -> str:
    """A description as stored: line breaks kept, other control characters refused."""
    if description is None:
        return ""
    if not isinstance(description, str):
        raise InvalidInput("description", "The description must be text.")
    lines = [
        clean_text("description", line, max_length=MAX_DESCRIPTION_LENGTH)
        for line in description.replace("\r\n", "\n").split("\n")
    ]
    value = "\n".join(lines).strip()
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            "description",
            f"The description is too long (at most {MAX_DESCRIPTION_LENGTH} characters).",
        )
    return value


class UnknownNewsletter(LookupError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"There is no newsletter called {slug!r}.")
        self.slug = slug


def ensure_default_newsletter(session: Session, *, language: str, time_zone: str) -> Newsletter:
    """Create the `daily` newsletter if it is missing; leave it alone if it exists.

    Several machines may run `newsletter init` at once: the one that loses the race to
    insert it finds the winner's.
    """
    find = select(Newsletter).where(Newsletter.slug == DEFAULT_SLUG)
    newsletter = session.scalar(find)
    if newsletter is not None:
        return newsletter
    try:
        with session.begin_nested():
            newsletter = Newsletter(
                slug=DEFAULT_SLUG,
                name=DEFAULT_NAME,
                language=language,
                time_zone=time_zone,
                translations=DEFAULT_TRANSLATIONS,
            )
            session.add(newsletter)
    except IntegrityError:
        # Inserted by another machine since the look above (and committed: the unique
        # index waited for it).
        newsletter = session.scalars(find).one()
    return newsletter


def list_newsletters(session: Session) -> list[Newsletter]:
    return list(session.scalars(select(Newsletter).order_by(Newsletter.id)))


def get_by_slug(session: Session, slug: str) -> Newsletter:
    _askable(slug)
    newsletter = session.scalar(select(Newsletter).where(Newsletter.slug == slug))
    if newsletter is None:
        raise UnknownNewsletter(slug)
    return newsletter


def _askable(slug: str) -> None:
    # A slug with control characters (a NUL, which PostgreSQL refuses in text) or longer
    # than any slug can be names no newsletter: no need to ask the database.
    if len(slug) > 64 or not slug.isprintable():
        raise UnknownNewsletter(slug[:64])


def get_by_slugs(session: Session, slugs: list[str]) -> list[Newsletter]:
    """The newsletters named, in order, refusing any unknown one; none named means `daily`."""
    return [get_by_slug(session, slug) for slug in dict.fromkeys(slugs or [DEFAULT_SLUG])]


# Slugs each process has found in each database. A newsletter is never deleted and its
# slug never changes (it names the newsletter in links, List-Id and archives), so a slug
# found once stays good: the signup request then asks the database nothing at all (it
# was a third of the request's time). A newsletter added since is looked up on its first
# signup. Should an operator delete one by hand, a signup naming it is still answered 202
# by this process, and the worker, which reads the newsletters, records nothing.
_known_slugs: dict[str, set[str]] = {}
_known_slugs_lock = threading.Lock()


def check_slugs(session: Session, slugs: list[str]) -> None:
    """UnknownNewsletter unless every newsletter named exists (none named means `daily`);
    reads the database only for slugs this process has not found in it before."""
    database = session.get_bind().engine.url.render_as_string(hide_password=True)
    named = list(dict.fromkeys(slugs or [DEFAULT_SLUG]))
    with _known_slugs_lock:
        known = set(_known_slugs.get(database, ()))
    missing = [slug for slug in named if slug not in known]
    if not missing:
        return
    for slug in missing:
        _askable(slug)
    found = set(session.scalars(select(Newsletter.slug).where(Newsletter.slug.in_(missing))))
    with _known_slugs_lock:
        _known_slugs.setdefault(database, set()).update(found)
    for slug in missing:
        if slug not in found:
            raise UnknownNewsletter(slug)


def forget_known_slugs() -> None:
    """Forget the slugs found so far (the tests empty the database under a process)."""
    with _known_slugs_lock:
        _known_slugs.clear()


def set_sender(
    session: Session,
    *,
    slug: str,
    from_name: str | None = None,
    reply_to: str | None = None,
) -> Newsletter:
    """The name its emails come from and where replies go ("" takes either away; None
    leaves it). UnknownNewsletter or InvalidInput, changing nothing."""
    newsletter = get_by_slug(session, slug)
    name = None if from_name is None else clean_text("from name", from_name)
    address = None
    if reply_to is not None and reply_to.strip():
        address = clean_email(reply_to)[0]
    if name is not None:
        newsletter.from_name = name or None
    if reply_to is not None:
        newsletter.reply_to = address
    session.flush()
    return newsletter


def set_click_order(session: Session, *, slug: str, on: bool) -> Newsletter:
    """Order each reader's stories, after the editor's pins and priority, by what readers
    of their language clicked most lately (counts only; digests/composer.click_order)."""
    newsletter = get_by_slug(session, slug)
    newsletter.order_by_clicks = on
    session.flush()
    return newsletter


def translate_newsletter(
    session: Session,
    *,
    slug: str,
    names: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> Newsletter:
    """Give an existing newsletter its name and/or description in some languages.

    Everything is checked before anything changes. Raises UnknownNewsletter or InvalidInput.
    """
    newsletter = get_by_slug(session, slug)
    set_translations(newsletter, names=names, descriptions=descriptions)
    session.flush()
    return newsletter
