"""The public archive's pages: a newsletter's sent digests, and their Atom feed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.core.i18n import LANGUAGE_TAGS, N_, local_date_time
from newsletter.digests import archive
from newsletter.subscribers.newsletters import UnknownNewsletter, get_by_slug
from newsletter.web.deps import SessionDep, SettingsDep, page, page_language, refusals

router = APIRouter()

NO_SUCH_NEWSLETTER = N_("There is no such newsletter.")


@router.get("/archive/{newsletter}", response_class=HTMLResponse, responses=refusals(404, 422))
def archive_page(
    newsletter: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    """The sent digests of a newsletter, newest first, 20 a page, in the visitor's language."""
    language, _ = page_language(request, settings)
    try:
        found = archive.archive_page(
            session,
            newsletter_slug=newsletter,
            language=language,
            page=page_number,
            settings=settings,
        )
    except UnknownNewsletter:
        raise HTTPException(status_code=404, detail=NO_SUCH_NEWSLETTER) from None
    zone = found.newsletter.time_zone
    return page(
        request,
        "archive.html",
        {
            "archive": found,
            "newsletter": found.newsletter,
            "dates": {
                d.digest_id: local_date_time(d.sent_at, zone, language) for d in found.digests
            },
            "feed_url": f"/archive/{found.newsletter.slug}/feed.xml?lang={language}",
        },
    )


@router.get("/archive/{newsletter}/feed.xml", responses=refusals(404, 422))
def archive_feed(
    newsletter: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    lang: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """The newsletter's latest sent digests as Atom 1.0, in `lang` where a copy exists."""
    try:
        language = lang if lang in LANGUAGE_TAGS else None
        body = archive.feed(
            session,
            newsletter_slug=newsletter,
            language=language or _newsletter_language(session, newsletter),
            settings=settings,
        )
    except UnknownNewsletter:
        raise HTTPException(status_code=404, detail=NO_SUCH_NEWSLETTER) from None
    return Response(body, media_type="application/atom+xml; charset=utf-8")


def _newsletter_language(session: SessionDep, slug: str) -> str:
    return get_by_slug(session, slug).language
