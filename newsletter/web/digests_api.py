"""The editors' digest API: preview what a reader would get (more comes with sending)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from newsletter import digests
from newsletter.newsletters import UnknownNewsletter
from newsletter.validation import clean_text
from newsletter.web.deps import AdminDep, SessionDep, SettingsDep

router = APIRouter(prefix="/api/digests", dependencies=[AdminDep])


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
