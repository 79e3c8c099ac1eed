"""Shared dependencies of the routes: settings, a database session, a unit of work, pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from sqlalchemy.orm import Session

from newsletter.app.admin_sessions import admin_token_matches
from newsletter.app.unit_of_work import UnitOfWork
from newsletter.core import db
from newsletter.core.config import TEMPLATES_DIR, Settings, get_settings

templates = Jinja2Templates(directory=str(TEMPLATES_DIR / "pages"))


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
