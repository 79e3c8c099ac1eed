"""The editors' digest API: create, follow, pause, resume, cancel, and preview digests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from newsletter.core.validation import clean_text
from newsletter.digests import dispatcher as dispatch
from newsletter.digests import render as digests
from newsletter.digests.newsletters import UnknownNewsletter
from newsletter.tasks import jobs as tasks
from newsletter.web.deps import AdminDep, RowId, SessionDep, SettingsDep, refusals

router = APIRouter(
    prefix="/api/digests",
    dependencies=[AdminDep],
    responses=refusals(400, 401, 404, 409, 413, 422),
)
T = TypeVar("T")


class DigestRequest(BaseModel):
    """What an editor asks for: a newsletter, and optionally a window, a time, a subject."""

    model_config = ConfigDict(extra="forbid")

    newsletter: str = Field(default="daily", max_length=64)
    since: datetime | None = None
    send_at: datetime | None = None
    subject: str | None = Field(default=None, max_length=300)


@router.post("", status_code=201)
def create(request: DigestRequest, session: SessionDep) -> JSONResponse:
    """Create a digest, to send now or at `send_at` (kept in the database, started by beat)."""
    try:
        digest = dispatch.create_digest(
            session,
            newsletter_slug=request.newsletter,
            since=_aware(request.since),
            send_at=_aware(request.send_at),
            subject=request.subject,
        )
    except UnknownNewsletter as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    digest_id = digest.id
    session.commit()
    tasks.tick.delay()  # do not wait for the next beat to start a digest due now
    return JSONResponse(dispatch.digest_status(session, digest_id), status_code=201)


@router.get("/{digest_id:int}")
def status(digest_id: RowId, session: SessionDep) -> dict[str, object]:
    return _or_404(lambda: dispatch.digest_status(session, digest_id))


@router.post("/{digest_id:int}/cancel")
def cancel(digest_id: RowId, session: SessionDep) -> dict[str, object]:
    _act(lambda: dispatch.cancel(session, digest_id=digest_id))
    session.commit()
    return dispatch.digest_status(session, digest_id)


@router.post("/{digest_id:int}/pause")
def pause(digest_id: RowId, session: SessionDep) -> dict[str, object]:
    _act(lambda: dispatch.pause(session, digest_id=digest_id))
    session.commit()
    return dispatch.digest_status(session, digest_id)


@router.post("/{digest_id:int}/resume")
def resume(digest_id: RowId, session: SessionDep) -> dict[str, object]:
    _, batches = _act(lambda: dispatch.resume(session, digest_id=digest_id))
    session.commit()
    for batch in batches:
        tasks.send_batch.delay(digest_id, batch)
    return dispatch.digest_status(session, digest_id)


def _act(action: Callable[[], T]) -> T:
    try:
        return action()
    except dispatch.UnknownDigest as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except dispatch.DigestActionError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


_or_404 = _act


def _aware(moment: datetime | None) -> datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


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
        result = digests.preview(
            session,
            newsletter_slug=newsletter,
            settings=settings,
            subscriber_email=subscriber,
            since=since if since is None or since.tzinfo else since.replace(tzinfo=UTC),
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
