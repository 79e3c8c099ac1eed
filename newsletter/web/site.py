"""The site's furniture: its icon and its robots.txt."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, PlainTextResponse

from newsletter.core.config import TEMPLATES_DIR

router = APIRouter(include_in_schema=False)

ICON = TEMPLATES_DIR / "pages" / "favicon.svg"
# Pages behind a reader's token, the counted links and the dashboard: nothing for a
# search engine, and a crawler that follows them wastes a reader's one-time links.
ROBOTS = """User-agent: *
Disallow: /confirm/
Disallow: /unsubscribe/
Disallow: /preferences/
Disallow: /erase/
Disallow: /my-data/
Disallow: /r/
Disallow: /o/
Disallow: /admin
Disallow: /api/
"""


@router.get("/favicon.ico")
@router.get("/favicon.svg")
def icon() -> FileResponse:
    # An SVG under both names: every current browser takes it, whatever the name.
    return FileResponse(
        ICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/robots.txt")
def robots() -> PlainTextResponse:
    return PlainTextResponse(ROBOTS, headers={"Cache-Control": "public, max-age=86400"})
