"""The editors' article API: add an article as JSON, list the newest, tie translations into
one story (admin token needed)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.articles.store import (
    CONTROL_CHARS,
    SLUG_MAX_CHARS,
    STORY_MAX_CHARS,
    TITLE_MAX_CHARS,
    URL_MAX_CHARS,
    ParsedArticle,
    UnknownArticle,
    article_as_dict,
    clean_story,
    content_hash,
    guess_language,
    lede_summary,
    list_articles,
    set_story,
    store_article,
)
from newsletter.core import clock
from newsletter.core.config import LANGUAGES
from newsletter.core.models import Article
from newsletter.core.validation import clean_text, clean_topics, refuse_lone_surrogates
from newsletter.web.deps import AdminDep, RowId, SessionDep, refusals

BODY_MAX_BYTES = 200 * 1024
SUMMARY_MAX_CHARS = 1000
PRIORITY_RANGE = (-1000, 1000)
API_SOURCE = "api"

router = APIRouter(
    prefix="/api", dependencies=[AdminDep], responses=refusals(400, 401, 409, 413, 422)
)


class ArticleSubmission(BaseModel):
    """An article as an editor sends it: plain text, never markup."""

    model_config = ConfigDict(extra="forbid")

    title: str
    # Checked by hand: the app's error messages leave out a location part named "body".
    body: str = Field(default=None, validate_default=True)
    summary: str | None = None
    url: str | None = None
    language: str | None = None
    topics: list[str] = Field(default_factory=list)
    published_at: datetime | None = Field(
        default=None, description="ISO 8601; a time without an offset is taken as UTC."
    )
    priority: StrictInt = Field(default=0, ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1])
    slug: str | None = None
    hidden: StrictBool = False
    story: str | None = Field(
        default=None,
        description="The story this article is a version of: translations share the key "
        "(such as macau-bridge).",
    )

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        # Before any field: a lone surrogate cannot be stored or sent, in any field.
        refuse_lone_surrogates(data)
        return data

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        # A line break or bidi override in a title would reach email subjects and headers.
        title = clean_text("title", unicodedata.normalize("NFC", value), max_length=TITLE_MAX_CHARS)
        if not any(ch.isalnum() for ch in title):
            raise ValueError("The title is empty.")
        return " ".join(title.split())

    @field_validator("body", mode="before")
    @classmethod
    def _body_is_text(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("The body, the article's text, is required.")
        if not isinstance(value, str):
            raise ValueError("The body must be text.")
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        if len(value.encode("utf-8", "surrogatepass")) > BODY_MAX_BYTES:
            raise ValueError(f"The body is larger than {BODY_MAX_BYTES // 1024} KB.")
        if "\x00" in value:
            raise ValueError("The body contains NUL characters; it must be text.")
        body = value.replace("\r\n", "\n").replace("\r", "\n")
        # Stray control characters from a paste are dropped, as the file import does.
        body = CONTROL_CHARS.sub("", unicodedata.normalize("NFC", body)).strip()
        if not body:
            raise ValueError("The body is empty.")
        return body

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str | None) -> str | None:
        if value is None:
            return None
        summary = " ".join(CONTROL_CHARS.sub("", unicodedata.normalize("NFC", value)).split())
        if len(summary) > SUMMARY_MAX_CHARS:
            raise ValueError(f"The summary is longer than {SUMMARY_MAX_CHARS} characters.")
        return summary or None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        url = value.strip()
        if any(ch.isspace() for ch in url) or CONTROL_CHARS.search(url):
            raise ValueError("The url must not contain spaces or control characters.")
        if len(url) > URL_MAX_CHARS:
            raise ValueError(f"The url is longer than {URL_MAX_CHARS} characters.")
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            raise ValueError("The url is not a valid address.") from None
        if parts.scheme.lower() not in {"http", "https"} or not host:
            raise ValueError("The url must be an http:// or https:// address.")
        return url

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        # pt-BR, zh-Hans: the newsletter knows languages, not regions or scripts.
        language = re.split(r"[-_]", value.strip().casefold(), maxsplit=1)[0]
        if language not in LANGUAGES:
            raise ValueError(
                f"Unknown language {value[:20]!r}; choose one of {', '.join(LANGUAGES)}."
            )
        return language

    @field_validator("topics", mode="before")
    @classmethod
    def _topics(cls, value: Any) -> list[str]:
        if value is not None and not isinstance(value, list | str):
            raise ValueError("The topics must be a list of names or a comma-separated string.")
        # InvalidInput is a ValueError: its sentence becomes the 422 answer.
        return clean_topics(value)

    @field_validator("published_at")
    @classmethod
    def _published_at(cls, value: datetime | None) -> datetime | None:
        # Within the clock's years, like every time read from outside; no zone means UTC.
        return clock.to_utc(
            value, time_zone="UTC", field="published_at", label="the publication time"
        )

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        slug = value.strip()
        if len(slug) > SLUG_MAX_CHARS or not _SLUG.fullmatch(slug):
            raise ValueError(
                "The slug must be lower-case letters and digits joined by single dashes, "
                f"at most {SLUG_MAX_CHARS} characters."
            )
        return slug

    @field_validator("story", mode="before")
    @classmethod
    def _story(cls, value: Any) -> str | None:
        # InvalidInput is a ValueError: its sentence becomes the 422 answer.
        return clean_story(value)


class ArticleChanges(BaseModel):
    """What an editor may change on a stored article: the story it belongs to."""

    model_config = ConfigDict(extra="forbid")

    story: str | None = Field(description="The story key, or null: a story of its own.")

    @field_validator("story", mode="before")
    @classmethod
    def _story(cls, value: Any) -> str | None:
        return clean_story(value)


_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class SlugTaken(ValueError):
    """The slug asked for already names another article."""


@router.post(
    "/articles",
    status_code=201,
    responses={200: {"description": "The article was there already: the stored one."}},
)
def post_article(submission: ArticleSubmission, session: SessionDep) -> JSONResponse:
    """Add an article: 201 when new, 200 with the stored one when it is already there."""
    try:
        article, created = submit_article(session, **submission.model_dump())
    except SlugTaken as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    return JSONResponse(article_as_dict(article), status_code=201 if created else 200)


@router.get("/articles")
def get_articles(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    include_hidden: bool = False,
    story: Annotated[
        str | None,
        Query(max_length=STORY_MAX_CHARS, description="Only the versions of this story."),
    ] = None,
) -> dict[str, Any]:
    """The newest articles first."""
    articles = list_articles(
        session, limit=limit, include_hidden=include_hidden, story=clean_story(story)
    )
    return {"articles": [article_as_dict(article) for article in articles]}


@router.patch("/articles/{article_id}", responses=refusals(404))
def patch_article(
    article_id: RowId, changes: ArticleChanges, session: SessionDep
) -> dict[str, Any]:
    """Tie an article to a story (its translations share the key), or untie it (null)."""
    try:
        article = set_story(session, article_id=article_id, story=changes.story)
    except UnknownArticle as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    session.commit()
    return article_as_dict(article)


def submit_article(
    session: Session,
    *,
    title: str,
    body: str,
    summary: str | None = None,
    url: str | None = None,
    language: str | None = None,
    topics: Sequence[str] = (),
    published_at: datetime | None = None,
    priority: int = 0,
    slug: str | None = None,
    hidden: bool = False,
    story: str | None = None,
    source: str = API_SOURCE,
    now: datetime | None = None,
) -> tuple[Article, bool]:
    """Store an article once, from checked input; the same content again is not stored again.

    Returns (article, created). An article already there is returned unchanged: a repeated
    request does not re-rank, re-slug or re-hide it. Without a summary the lede's first
    sentences are used; without a language it is guessed. Raises SlugTaken, having written
    nothing, when the slug asked for names another article. The session is flushed (and
    rolled back, then retried once, if a concurrent insert of the same row wins).
    """
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
    parsed = ParsedArticle(
        title=title,
        body=body,
        summary=summary or lede_summary(paragraphs),
        url=url,
        language=language or guess_language(title, body),
        topics=list(topics),
        published_at=published_at,
        source=source,
        story=story,
    )
    try:
        return _store_once(session, parsed, slug=slug, priority=priority, hidden=hidden, now=now)
    except IntegrityError:
        # Two requests raced to insert the same article, or articles with the same title
        # raced for a slug: the retry finds the winner's row, or takes the next free slug.
        session.rollback()
        return _store_once(session, parsed, slug=slug, priority=priority, hidden=hidden, now=now)


def _store_once(
    session: Session,
    parsed: ParsedArticle,
    *,
    slug: str | None,
    priority: int,
    hidden: bool,
    now: datetime | None,
) -> tuple[Article, bool]:
    existing = session.scalar(select(Article).where(Article.content_hash == content_hash(parsed)))
    if existing is not None:
        return existing, False
    if slug is not None and session.scalar(select(Article.id).where(Article.slug == slug)):
        raise SlugTaken(f"The slug {slug!r} already names another article.")
    article, created = store_article(session, parsed, now=now)
    if created:
        if slug is not None:
            article.slug = slug
        article.priority = priority
        article.hidden = hidden
        session.flush()
    return article, created
