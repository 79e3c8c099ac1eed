"""The editors' digest API: create, follow, pause, resume, cancel, and preview digests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email import message_from_bytes, policy
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from newsletter.analytics import reports as analytics
from newsletter.app import editors
from newsletter.core import clock
from newsletter.core.validation import clean_language, clean_text, refuse_lone_surrogates
from newsletter.digests import lifecycle, outcomes, reports, trial
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
    draft: bool = Field(
        default=False, description="Kept as a draft: nothing is sent until it is scheduled."
    )
    intro: dict[str, str] | None = Field(
        default=None, description="The editor's note per language (Markdown): {'pt': '…'}."
    )
    subjects: dict[str, str] | None = Field(default=None, description="A subject per language.")
    pinned: list[int] | None = Field(
        default=None, description="Articles pinned to the top for every reader, in order."
    )
    excluded: list[int] | None = Field(default=None, description="Articles left out.")

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        # A lone surrogate cannot be stored, looked up or sent, in any field.
        refuse_lone_surrogates(data)
        return data

    def shape(self) -> dict[str, Any]:
        wanted = {
            "intro": self.intro,
            "subjects": self.subjects,
            "pinned": self.pinned,
            "excluded": self.excluded,
        }
        return {name: value for name, value in wanted.items() if value is not None}


class DigestEdit(BaseModel):
    """What an editor may change before a digest starts; what is not given stays."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=300, description='"" takes it away.')
    intro: dict[str, str] | None = Field(
        default=None, description="Per language; an empty text takes that language's away."
    )
    subjects: dict[str, str] | None = None
    pinned: list[int] | None = None
    excluded: list[int] | None = None
    send_at: datetime | None = Field(
        default=None, description="ISO 8601; without a zone, on the newsletter's clock."
    )

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        refuse_lone_surrogates(data)
        return data


class TestSendRequest(BaseModel):
    """Where a test goes (none: the seed list, NEWSLETTER_TEST_RECIPIENTS), and which copy:
    one language's, a reader's, or (neither) one per language its readers read."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: list[str] = Field(default_factory=list, max_length=100)
    as_reader: str | None = Field(default=None, alias="as", max_length=320)
    language: str | None = Field(default=None, max_length=8)

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        refuse_lone_surrogates(data)
        return data


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send_at: datetime | None = Field(
        default=None, description="ISO 8601 (newsletter's clock without a zone); none: now."
    )


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
            draft=request.draft,
            shape=request.shape(),
        )
    except UnknownNewsletter as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return JSONResponse(reports.digest_status(session, digest.id), status_code=201)


@router.get("/{digest_id:int}")
def status(digest_id: RowId, session: SessionDep) -> dict[str, object]:
    return _or_404(lambda: reports.digest_status(session, digest_id))


@router.patch("/{digest_id:int}")
def edit(
    digest_id: RowId, changes: DigestEdit, session: SessionDep, work: UnitOfWorkDep
) -> dict[str, object]:
    """Shape a digest that has not started: note, subjects, pinned and excluded stories."""
    given = changes.model_dump(exclude_unset=True)

    def apply() -> object:
        if "send_at" in given:
            time_zone = lifecycle.get_digest(session, digest_id).newsletter.time_zone
            given["send_at"] = clock.to_utc(
                changes.send_at, time_zone=time_zone, field="send_at", label=SEND_AT_WORDS
            )
        return editors.edit_digest(work, digest_id=digest_id, **given)

    _act(apply)
    return reports.digest_status(session, digest_id)


class SubjectTestRequest(BaseModel):
    """Two subjects to try on a sample of the readers before the rest go."""

    model_config = ConfigDict(extra="forbid")

    subjects: list[Annotated[str, Field(max_length=300)]] | None = Field(
        default=None,
        max_length=2,
        description="Two different subjects; none (or []) takes the test away.",
    )
    sample_percent: int | None = Field(
        default=None, description="The sample, 2 to 50 percent of the readers (10)."
    )
    wait_minutes: int | None = Field(
        default=None, description="How long the sample's clicks are counted, 5 to 2880 (240)."
    )

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        refuse_lone_surrogates(data)
        return data


class SubjectPick(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: Literal[0, 1] = Field(description="0: the first subject, 1: the second.")


@router.put("/{digest_id:int}/subject-test")
def subject_test(
    digest_id: RowId,
    request: SubjectTestRequest,
    session: SessionDep,
    work: UnitOfWorkDep,
    settings: SettingsDep,
) -> dict[str, object]:
    """Try two subjects on a sample; the rest get the one more readers clicked (needs
    NEWSLETTER_TRACK_CLICKS). Before the digest starts."""
    _act(
        lambda: editors.set_subject_test(
            work,
            digest_id=digest_id,
            subjects=request.subjects,
            sample_percent=request.sample_percent,
            wait_minutes=request.wait_minutes,
            settings=settings,
        )
    )
    return reports.digest_status(session, digest_id)


@router.post("/{digest_id:int}/subject-test/pick")
def pick_subject(
    digest_id: RowId, choice: SubjectPick, session: SessionDep, work: UnitOfWorkDep
) -> dict[str, object]:
    """Decide a waiting subject test by hand: the rest go with this subject now."""
    _act(lambda: editors.pick_subject(work, digest_id=digest_id, subject=choice.subject))
    return reports.digest_status(session, digest_id)


@router.post("/{digest_id:int}/schedule")
def schedule(
    digest_id: RowId,
    session: SessionDep,
    work: UnitOfWorkDep,
    request: ScheduleRequest | None = None,
) -> dict[str, object]:
    """Send a draft now, or at `send_at`: the editor's deliberate call, asked nothing more."""

    def apply() -> object:
        time_zone = lifecycle.get_digest(session, digest_id).newsletter.time_zone
        send_at = clock.to_utc(
            request.send_at if request else None,
            time_zone=time_zone,
            field="send_at",
            label=SEND_AT_WORDS,
        )
        return editors.schedule_digest(work, digest_id=digest_id, send_at=send_at)

    _act(apply)
    return reports.digest_status(session, digest_id)


@router.get("/{digest_id:int}/preview")
def digest_preview(
    digest_id: RowId,
    session: SessionDep,
    settings: SettingsDep,
    subscriber: Annotated[str | None, Query(max_length=320)] = None,
    language: Annotated[str | None, Query(max_length=8)] = None,
    format: Literal["html", "text", "eml"] = "html",
) -> Response:
    """This digest as it stands, as a reader (or a reader in `language`) would get it."""
    try:
        digest = lifecycle.get_digest(session, digest_id)
        result = digests.preview_digest(
            session,
            digest,
            settings=settings,
            subscriber_email=subscriber,
            language=clean_language(language, default="") or None,
        )
    except lifecycle.UnknownDigest as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except digests.NothingToSend as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    return _preview_response(result, format)


@router.post("/{digest_id:int}/test", status_code=202)
def test_send(
    digest_id: RowId,
    request: TestSendRequest,
    settings: SettingsDep,
    work: UnitOfWorkDep,
) -> dict[str, object]:
    """Send the digest as it stands, marked [TEST], to the editor's addresses (recorded,
    never a delivery); follow it at GET /api/digests/{id}/tests."""
    try:
        test = _act(
            lambda: editors.test_send(
                work,
                to=request.to,
                settings=settings,
                digest_id=digest_id,
                language=request.language,
                as_reader=request.as_reader,
            )
        )
    except digests.NothingToSend as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    return trial.as_dict(test)


@router.get("/{digest_id:int}/outcomes")
def digest_outcomes(digest_id: RowId, session: SessionDep) -> dict[str, Any]:
    """How the digest's deliveries ended, and why each skipped, failed or bounced one did
    (grouped, a few masked examples each)."""
    return _act(lambda: outcomes.digest_outcomes(session, digest_id)).as_dict()


@router.get("/{digest_id:int}/report")
def digest_report(digest_id: RowId, session: SessionDep) -> dict[str, Any]:
    """What its readers read: delivered, unique clicks and click rate; by story, language,
    topic and subject arm; machines' clicks and opens apart. Counts only (README
    "Analytics and privacy"); empty while NEWSLETTER_TRACK_CLICKS is off."""
    _act(lambda: lifecycle.get_digest(session, digest_id))
    return analytics.as_dict(analytics.digest_report(session, digest_id=digest_id))


@router.get("/{digest_id:int}/report.csv", responses={200: {"content": {"text/csv": {}}}})
def digest_report_csv(digest_id: RowId, session: SessionDep) -> Response:
    """The same report as a spreadsheet."""
    _act(lambda: lifecycle.get_digest(session, digest_id))
    return report_download(session, digest_id)


def report_download(session: Session, digest_id: int) -> Response:
    """A digest's report as a CSV download: the API's and the dashboard's."""
    return Response(
        analytics.report_csv(analytics.digest_report(session, digest_id=digest_id)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="digest-{digest_id}-report.csv"'},
    )


@router.get("/{digest_id:int}/tests")
def test_sends(digest_id: RowId, session: SessionDep) -> list[dict[str, object]]:
    """The digest's latest test sends, newest first, with each address's outcome."""
    _act(lambda: lifecycle.get_digest(session, digest_id))
    return [trial.as_dict(t) for t in trial.recent(session, digest_id=digest_id)]


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
    return _preview_response(result, format)


def _preview_response(result: digests.Preview, format: str) -> Response:
    if format == "eml":
        return Response(result.message.data, media_type="message/rfc822")
    message = message_from_bytes(result.message.data, policy=policy.default)
    part = message.get_body(preferencelist=("html" if format == "html" else "plain",))
    content = str(part.get_content()) if part is not None else ""
    # Percent-encoded UTF-8: a header carries ASCII only, and subjects are in any script.
    headers = {"X-Digest-Subject": quote(result.subject, safe=" ")}
    if format == "html":
        return HTMLResponse(content, headers=headers)
    return PlainTextResponse(content, headers=headers)
