"""Shared dependencies of the routes: settings, a database session, page templates."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from newsletter import db
from newsletter.config import TEMPLATES_DIR, Settings, get_settings

templates = Jinja2Templates(directory=str(TEMPLATES_DIR / "pages"))


def _session() -> Iterator[Session]:
    with db.session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]
# Ids in paths and queries stay within the databases' integer range: a larger one is a 422.
MAX_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
OptionalRowIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def page(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    settings = get_settings()
    return templates.TemplateResponse(
        request,
        name,
        {"publisher": settings.publisher_name, **(context or {})},
        status_code=status_code,
    )


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
    expected = get_settings().admin_token
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise HTTPException(
            status_code=401,
            detail="This needs the admin token: send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminDep = Depends(require_admin)
