"""The counted doors of a digest: `/r/<token>` (a story link) and `/o/<token>` (the pixel).

Each answers at once (a redirect, an image) and leaves one line in the buffer
(analytics/buffer.py); the beat writes them. A link we did not make is refused, so the
redirect sends nobody anywhere we did not link to.
"""

from __future__ import annotations

import base64
import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from newsletter.analytics import links
from newsletter.analytics.buffer import BatchingHitBuffer, HitBuffer, hit_buffer
from newsletter.analytics.hits import Hit
from newsletter.core import db
from newsletter.core.config import Settings, get_settings
from newsletter.core.i18n import N_
from newsletter.web.deps import page, refusals
from newsletter.web.headers import is_head

log = logging.getLogger("newsletter.web")
router = APIRouter()
# A transparent GIF of one pixel.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# Each click and open counts: no cache may answer for us.
NOT_STORED = {"Cache-Control": "no-store, private"}


def install(app: FastAPI, settings: Settings) -> None:
    """The two doors, the app's buffer and its memory of where stories lead. Installed
    first: routes are matched in order, and these are the busiest after a send."""
    app.state.hits = BatchingHitBuffer(hit_buffer(settings))
    app.state.destinations = links.Destinations(settings)
    app.include_router(router)
    app.router.add_event_handler("shutdown", app.state.hits.close)


# HEAD too: link scanners send it (counted as a machine's), and it must not be a 405.
@router.head("/r/{token}", include_in_schema=False)
@router.get("/r/{token}", responses=refusals(400, 410), name="story_link")
async def story_link(token: str, request: Request) -> Response:
    """A reader's click on a story: counted, then on to the article."""
    settings = get_settings()
    hit = _hit(request, settings, token, open_pixel=False)  # TokenError: 400
    destinations: links.Destinations = request.app.state.destinations
    assert hit.article_id is not None
    destination = destinations.known(hit.article_id)
    if destination is None:
        with db.session_scope() as session:
            destination = destinations.read(session, hit.article_id)
    _count(request.app.state.hits, hit)
    if destination.url is None or destination.hidden:
        return page(
            request,
            "message.html",
            {
                "title": N_("This story is no longer here"),
                "message": N_(
                    "The story this link led to has been taken down since the email was "
                    "sent. The rest of the newsletter is still there for you."
                ),
            },
            status_code=410,
        )
    return RedirectResponse(destination.url, status_code=302, headers=NOT_STORED)


@router.get("/o/{token}", responses=refusals(400), name="open_pixel")
async def open_pixel(token: str, request: Request) -> Response:
    settings = get_settings()
    _count(request.app.state.hits, _hit(request, settings, token, open_pixel=True))
    return Response(PIXEL, media_type="image/gif", headers=NOT_STORED)


def _hit(request: Request, settings: Settings, token: str, *, open_pixel: bool) -> Hit:
    copy = links.read_copy(
        settings, anonymous=request.query_params.get("c"), reader=request.query_params.get("r")
    )
    return links.make_hit(
        settings,
        token,
        copy=copy,
        head=is_head(request),
        agent=request.headers.get("user-agent", ""),
        client=request.client.host if request.client else None,
        open_pixel=open_pixel,
    )


def _count(buffer: HitBuffer, hit: Hit) -> None:
    try:
        buffer.add(hit)
    except Exception as exc:  # the reader goes on to the story whatever befalls the count
        log.warning("a %s was not counted: %s", hit.kind, type(exc).__name__)
