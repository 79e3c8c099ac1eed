"""Shared dependencies of the routes: settings, a database session, a unit of work, pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from pydantic import BaseModel
from sqlalchemy.orm import Session

from newsletter.app.admin_sessions import admin_token_matches
from newsletter.app.unit_of_work import UnitOfWork
from newsletter.core import db
from newsletter.core.config import TEMPLATES_DIR, Settings, get_settings
from newsletter.core.i18n import (
    LANGUAGE_NAMES,
    LANGUAGE_TAGS,
    Phrase,
    in_language,
    install_page_translations,
    negotiate_language,
)
from newsletter.core.models import Newsletter
from newsletter.subscribers.newsletters import NewsletterText, newsletter_text

templates = Jinja2Templates(directory=str(TEMPLATES_DIR / "pages"))
install_page_translations(templates.env)


@pass_context
def _newsletter_text_of_page(context: Context, newsletter: Newsletter) -> NewsletterText:
    return newsletter_text(newsletter, context.get("language") or "en")


# `{{ newsletter_text(n).name }}`, `.description`: a newsletter as the editor named it in
# the page's language.
templates.env.globals["newsletter_text"] = _newsletter_text_of_page
# The cookie that keeps a visitor's choice of language from the switcher (`?lang=pt`).
LANGUAGE_COOKIE = "lang"
LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600


def _session() -> Iterator[Session]:
    with db.session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


def _unit_of_work(request: Request, session: SessionDep) -> UnitOfWork:
    # The request's own session (FastAPI gives one per request) and the app's queue,
    # which create_app chose: the Celery broker, or what a test puts there.
    return UnitOfWork(session, request.app.state.queue)


UnitOfWorkDep = Annotated[UnitOfWork, Depends(_unit_of_work)]
# Ids in paths and queries stay within the databases' integer range: a larger one is a 422.
MAX_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
OptionalRowIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def page_language(request: Request, settings: Settings) -> tuple[str, bool]:
    """The language of an anonymous page, and whether the visitor just chose it.

    The switcher's `?lang=` first (it sticks, in a cookie), then that cookie, then what the
    browser asks for in Accept-Language, then the publisher's default.
    """
    chosen = request.query_params.get("lang", "")
    if chosen in LANGUAGE_TAGS:
        return chosen, True
    kept = request.cookies.get(LANGUAGE_COOKIE, "")
    if kept in LANGUAGE_TAGS:
        return kept, False
    return negotiate_language(
        request.headers.get("accept-language"), default=settings.default_language
    ), False


def page(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    language: str | None = None,
) -> HTMLResponse:
    """A page in `language` (a reader's stored one, on pages reached by their token), else
    in the language the visitor chose or their browser asks for."""
    settings = get_settings()
    switched = False
    # A reader's own pages speak their stored language; the switcher is for everyone else.
    switcher = language not in LANGUAGE_TAGS
    if language not in LANGUAGE_TAGS:
        language, switched = page_language(request, settings)
    # Texts from the routes (titles, messages: Phrases) are written in the page's language.
    given = {
        key: in_language(value, language) if isinstance(value, Phrase) else value
        for key, value in (context or {}).items()
    }
    response = templates.TemplateResponse(
        request,
        name,
        {
            "publisher": settings.publisher_name,
            "language": language,
            "html_lang": LANGUAGE_TAGS[language],
            "language_names": LANGUAGE_NAMES,
            "language_switcher": switcher,
            **given,
        },
        status_code=status_code,
    )
    if switcher:
        # The same address answers in the language the browser or the cookie asks for: a
        # shared cache in front must keep one copy per language, not serve the first.
        response.headers.append("Vary", "Accept-Language, Cookie")
    if switched:
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=LANGUAGE_COOKIE_SECONDS,
            httponly=True,
            samesite="lax",
            secure=settings.base_url.startswith("https://"),
        )
    return response


def wants_json(request: Request) -> bool:
    """JSON callers get JSON answers; browsers posting forms get pages."""
    content_type = request.headers.get("content-type", "")
    accept = request.headers.get("accept", "")
    return content_type.startswith("application/json") or (
        "application/json" in accept and "text/html" not in accept
    )


def require_admin(
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Admin API calls carry `Authorization: Bearer <NEWSLETTER_ADMIN_TOKEN>`."""
    scheme, _, given = (authorization or "").partition(" ")
    # Never compared with an empty token: one configured empty opens nothing.
    if scheme.lower() != "bearer" or not admin_token_matches(given, get_settings().admin_token):
        raise HTTPException(
            status_code=401,
            detail="This needs the admin token: send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminDep = Depends(require_admin)


class Problem(BaseModel):
    """Every refusal: a sentence a person understands, and the field at fault if there is one."""

    detail: str
    field: str | None = None


_REFUSALS = {
    400: "The request or the link in it is broken, or has expired.",
    401: "The credentials (admin token or provider signature) are missing or wrong.",
    403: "The credentials are understood but do not allow this.",
    404: "There is no such thing here.",
    409: "The request conflicts with the current state of what it names.",
    410: "What the link led to has been taken down.",
    413: "The body is larger than this route takes.",
    422: "The input was understood but is not valid; `field` names what to fix.",
    429: "Too many attempts: try again after `Retry-After` seconds.",
    503: "The service cannot answer this now (a part of it is down or not set up).",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The refusals a route may give, for the spec: JSON for API callers, a page for browsers."""
    return {
        code: {"model": Problem, "description": _REFUSALS[code], "content": {"text/html": {}}}
        for code in codes
    }
