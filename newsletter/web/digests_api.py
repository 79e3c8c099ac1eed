"""The editors' digest API: create, follow, pause, resume, cancel, and preview digests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email import message_from_bytes, policy
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from newsletter.app import editors
from newsletter.core import clock
from newsletter.core.validation import clean_text, refuse_lone_surrogates
from newsletter.digests import lifecycle, reports
from newsletter.digests import render as digests
from newsletter.subscribers.newsletters import UnknownNewsletter, get_by_slug
from newsletter.web.deps import AdminDep, RowId, SessionDep, SettingsDep, UnitOfWorkDep, refusals

router = APIRouter(
    prefix="/api/digests",
    dependencies=[AdminDep],
    responses=refusals(400, 401, 404, 409, 413, 422),
)
T = TypeVar("T")
# How the times an editor gives are named when they are refused (422, in words).
SINCE_WORDS = "the start of the window (since)"
SEND_AT_WORDS = "the sending time (send_at)"


class DigestRequest(BaseModel):
    """What an editor asks for: a newsletter, and optionally a window, a time, a subject."""

    model_config = ConfigDict(extra="forbid")

    newsletter: str = Field(default="daily", max_length=64)
    since: datetime | None = Field(
        default=None, description="ISO 8601; without a zone, on the newsletter's clock."
    )
    send_at: datetime | None = Field(
        default=None, description="ISO 8601; without a zone, on the newsletter's clock."
    )
    subject: str | None = Field(default=None, max_length=300)

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        # A lone surrogate cannot be stored, looked up or sent, in any field.
        refuse_lone_surrogates(data)
        return data


@router.post("", status_code=201)
def create(request: DigestRequest, session: SessionDep, work: UnitOfWorkDep) -> JSONResponse:
    """Create a digest, to send now or at `send_at` (kept in the database, started by beat)."""
    try:
        # A time without a zone is on the newsletter's clock, as in the CLI and the dashboard.
        time_zone = get_by_slug(session, request.newsletter).time_zone
        digest = editors.create_digest(
            work,
            newsletter_slug=request.newsletter,
            since=clock.to_utc(
                request.since, time_zone=time_zone, field="since", label=SINCE_WORDS
            ),
            send_at=clock.to_utc(
                request.send_at, time_zone=time_zone, field="send_at", label=SEND_AT_WORDS
            ),
            subject=request.subject,
        )
    except UnknownNewsletter as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return JSONResponse(reports.digest_status(session, digest.id), status_code=201)


@router.get("/{digest_id:int}")
def status(digest_id: RowId, session: SessionDep) -> dict[str, object]:
    return _or_404(lambda: reports.digest_status(session, digest_id))


@router.post("/{digest_id:int}/cancel")
def cancel(digest_id: RowId, session: SessionDep, work: UnitOfWorkDep) -> dict[str, object]:
    _act(lambda: editors.cancel_digest(work, digest_id=digest_id))
    return reports.digest_status(session, digest_id)


@router.post("/{digest_id:int}/pause")
def pause(digest_id: RowId, session: SessionDep, work: UnitOfWorkDep) -> dict[str, object]:
    _act(lambda: editors.pause_digest(work, digest_id=digest_id))
    return reports.digest_status(session, digest_id)


@router.post("/{digest_id:int}/resume")
def resume(digest_id: RowId, session: SessionDep, work: UnitOfWorkDep) -> dict[str, object]:
    _act(lambda: editors.resume_digest(work, digest_id=digest_id))
    return reports.digest_status(session, digest_id)


def _act(action: Callable[[], T]) -> T:
    try:
        return action()
    except lifecycle.UnknownDigest as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except lifecycle.DigestActionError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


_or_404 = _act


@router.get("/preview")
def preview(
    session: SessionDep,
    settings: SettingsDep,
    newsletter: Annotated[str, Query(max_length=64)] = "daily",
    subscriber: Annotated[str | None, Query(max_length=320)] = None,
    since: datetime | None = None,
    subject: Annotated[str | None, Query(max_length=300)] = None,
    format: Literal["html", "text", "eml"] = "html",
) -> Response:
    """Exactly what a reader would get if the digest were sent now (admin token)."""
    try:
        time_zone = get_by_slug(session, newsletter).time_zone
        result = digests.preview(
            session,
            newsletter_slug=newsletter,
            settings=settings,
            subscriber_email=subscriber,
            since=clock.to_utc(since, time_zone=time_zone, field="since", label=SINCE_WORDS),
            subject=clean_text("subject", subject) or None,
        )
    except UnknownNewsletter as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except digests.NothingToSend as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    if format == "eml":
        return Response(result.message.data, media_type="message/rfc822")
    message = message_from_bytes(result.message.data, policy=policy.default)
    part = message.get_body(preferencelist=("html" if format == "html" else "plain",))
    content = str(part.get_content()) if part is not None else ""
    headers = {"X-Digest-Subject": result.subject.encode("utf-8").decode("latin-1")}
    if format == "html":
        return HTMLResponse(content, headers=headers)
    return PlainTextResponse(content, headers=headers)
