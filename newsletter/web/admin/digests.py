"""Admin dashboard: digests — the list, a new one, each one's progress, actions and preview."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from newsletter.analytics import reports as analytics
from newsletter.app import editors
from newsletter.app.admin_sessions import SignedIn
from newsletter.core import clock
from newsletter.core.clock import utcnow
from newsletter.core.config import get_settings
from newsletter.core.i18n import LANGUAGE_NAMES, LANGUAGE_TAGS
from newsletter.core.models import Digest, DigestState, Newsletter
from newsletter.core.validation import InvalidInput
from newsletter.digests import (
    composer,
    lifecycle,
    outcomes,
    reports,
    shaping,
    subject_test,
    trial,
    upcoming,
)
from newsletter.digests import render as digests
from newsletter.ops import charts
from newsletter.subscribers import audience
from newsletter.subscribers.newsletters import UnknownNewsletter, get_by_slug, list_newsletters
from newsletter.subscribers.store import UnknownSubscriber
from newsletter.web.admin.auth import Admin, AdminForm, admin_page, message_page, redirect
from newsletter.web.admin.listing import PageNumber
from newsletter.web.deps import RowId, SessionDep, UnitOfWorkDep
from newsletter.web.digests_api import report_download

log = logging.getLogger("newsletter.web.admin")

router = APIRouter(prefix="/admin", include_in_schema=False)

PAGE_SIZE = 25
# The stories the desk lists: a window holds a few dozen; a list of thousands helps nobody.
DESK_STORIES = 100
# A time to send "at" that is this far in the past is a mistake, not "now".
PAST_GRACE = timedelta(minutes=1)
# The email preview is shown in a sandboxed frame and may hold hostile article text:
# nothing in it runs, loads from elsewhere, or submits anywhere, even when opened directly.
PREVIEW_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'"
)

# Progress bars ask each second while a digest is sent (or about to be), else each 10 s.
FAST_POLL_MS = 1000
SLOW_POLL_MS = 10_000
SOON = timedelta(minutes=1)

# Longer than any valid value, so that a too-long one gets our sentence, not a 422 dump.
FormText = Annotated[str, Form(max_length=2000)]
NoteText = Annotated[str, Form(max_length=10_000)]
EmailQuery = Annotated[str, Query(max_length=320)]


@router.get("/digests")
def digests_page(
    request: Request, admin: Admin, session: SessionDep, page: PageNumber = 1
) -> HTMLResponse:
    rows, total = reports.list_digests(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    zones = {n.slug: n.time_zone for n in list_newsletters(session)}
    for row in rows:
        _decorate(row, zones.get(row["newsletter"], "UTC"))
    return admin_page(
        request,
        "digests.html",
        admin,
        {
            "digests": rows,
            "page": page,
            "has_next": page * PAGE_SIZE < total,
            "total": total,
            "upcoming": upcoming.upcoming_sends(session) if page == 1 else [],
        },
    )


@router.get("/digests/new")
def new_digest_form(request: Request, admin: Admin, session: SessionDep) -> HTMLResponse:
    return _form_page(request, admin, session, form=None)


@router.post("/digests")
def create_digest(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    work: UnitOfWorkDep,
    newsletter: FormText = "",
    window: FormText = "last",
    since: FormText = "",
    subject: FormText = "",
) -> Response:
    """A new digest is a draft: nobody is mailed until the editor confirms a send."""
    form = {"newsletter": newsletter, "window": window, "since": since, "subject": subject}
    try:
        chosen = _newsletter(session, newsletter)
        since_moment = (
            _local_moment("since", since, chosen.time_zone) if window == "since" else None
        )
        digest = editors.create_digest(
            work,
            newsletter_slug=chosen.slug,
            since=since_moment,
            subject=subject,
            draft=True,
            now=utcnow(),
        )
    except InvalidInput as exc:
        work.rollback()
        return _form_page(request, admin, session, form=form, error=exc.message, status_code=422)
    return redirect(
        f"/admin/digests/{digest.id}",
        f"Digest #{digest.id} saved as a draft: preview it, then send or schedule it.",
    )


@router.get("/digests/{digest_id:int}/confirm")
def confirm_page(
    request: Request,
    admin: Admin,
    session: SessionDep,
    digest_id: RowId,
    send: Annotated[str, Query(max_length=10)] = "now",
    send_at: Annotated[str, Query(max_length=100)] = "",
) -> HTMLResponse:
    """Before a draft goes out: whom it will reach, by language, and the window it covers."""
    try:
        digest = lifecycle.get_digest(session, digest_id)
    except lifecycle.UnknownDigest as exc:
        return _not_found(request, admin, str(exc))
    try:
        send_moment = _send_moment(digest, send, send_at)
    except (InvalidInput, lifecycle.DigestActionError) as exc:
        message = exc.message if isinstance(exc, InvalidInput) else str(exc)
        status_code = 422 if isinstance(exc, InvalidInput) else 409
        return _digest_page(
            request, admin, session, digest_id, error=message, status_code=status_code
        )
    newsletter = digest.newsletter
    found = audience.reach(session, newsletter_id=newsletter.id)
    now = utcnow()
    since, until = composer.digest_window(
        session,
        newsletter_id=newsletter.id,
        since=digest.since,
        now=send_moment or now,
        first_window=timedelta(hours=get_settings().digest_first_window_hours),
    )
    articles = len(
        composer.candidate_articles(
            session, since=since, until=min(until, now), shaping=composer.Shaping.of(digest)
        )
    )
    zone = newsletter.time_zone
    return admin_page(
        request,
        "digest_confirm.html",
        admin,
        {
            "digest": digest,
            "newsletter": newsletter,
            "reach": found,
            "by_language": audience.by_language_in_words(found),
            "send": "at" if send_moment else "now",
            "send_at": send_at,
            "send_at_local": _local(send_moment, zone) if send_moment else None,
            "since_local": _local(since, zone),
            "until_local": _local(until, zone),
            "articles": articles,
        },
    )


@router.post("/digests/{digest_id:int}/schedule")
def schedule_digest(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    work: UnitOfWorkDep,
    digest_id: RowId,
    send: FormText = "now",
    send_at: FormText = "",
) -> Response:
    """The confirmed send: only here does a draft become a digest on its way to readers."""
    try:
        digest = lifecycle.get_digest(session, digest_id)
        send_moment = _send_moment(digest, send, send_at)
        if (
            send_moment is None
            and not audience.reach(session, newsletter_id=digest.newsletter_id).total
        ):
            raise lifecycle.DigestActionError(
                "No reader may be mailed this newsletter now: there is nobody to send it to."
            )
        zone = digest.newsletter.time_zone
        scheduled = editors.schedule_digest(work, digest_id=digest_id, send_at=send_moment)
    except lifecycle.UnknownDigest as exc:
        work.rollback()
        return _not_found(request, admin, str(exc))
    except InvalidInput as exc:
        work.rollback()
        return _digest_page(request, admin, session, digest_id, error=exc.message, status_code=422)
    except lifecycle.DigestActionError as exc:
        work.rollback()
        return _digest_page(request, admin, session, digest_id, error=str(exc), status_code=409)
    if send_moment is None:
        notice = f"Digest #{digest_id} is on its way: it starts within a few seconds."
    else:
        when = _local(scheduled.scheduled_for or send_moment, zone)
        notice = f"Digest #{digest_id}: " + reports.banner(
            scheduled.state, scheduled_for_local=when
        )
    return redirect(f"/admin/digests/{digest_id}", notice)


@router.post("/digests/{digest_id:int}/edit")
def edit_digest(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    work: UnitOfWorkDep,
    digest_id: RowId,
    subject: FormText = "",
    subject_pt: FormText = "",
    subject_en: FormText = "",
    subject_zh: FormText = "",
    note_pt: NoteText = "",
    note_en: NoteText = "",
    note_zh: NoteText = "",
    story: Annotated[list[int], Form(max_length=500)] = [],  # noqa: B006 (FastAPI reads it)
    order: Annotated[list[str], Form(max_length=500)] = [],  # noqa: B006
    exclude: Annotated[list[int], Form(max_length=500)] = [],  # noqa: B006
) -> Response:
    """The editor's desk: note and subject per language, stories pinned in order or left out."""
    try:
        editors.edit_digest(
            work,
            digest_id=digest_id,
            subject=subject,
            subjects={"pt": subject_pt, "en": subject_en, "zh": subject_zh},
            intro={"pt": note_pt, "en": note_en, "zh": note_zh},
            pinned=_pinned_in_order(story, order),
            excluded=exclude,
        )
    except lifecycle.UnknownDigest as exc:
        return _not_found(request, admin, str(exc))
    except InvalidInput as exc:
        return _digest_page(request, admin, session, digest_id, error=exc.message, status_code=422)
    except lifecycle.DigestActionError as exc:
        return _digest_page(request, admin, session, digest_id, error=str(exc), status_code=409)
    return redirect(f"/admin/digests/{digest_id}", f"Digest #{digest_id} saved.")


@router.post("/digests/{digest_id}/subject-test")
def set_subject_test(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    work: UnitOfWorkDep,
    digest_id: RowId,
    subject_a: FormText = "",
    subject_b: FormText = "",
    sample_percent: Annotated[int, Form(ge=0, le=100)] = subject_test.DEFAULT_SAMPLE_PERCENT,
    wait_minutes: Annotated[int, Form(ge=0, le=100_000)] = subject_test.DEFAULT_WAIT_MINUTES,
) -> Response:
    """Two subjects for a sample, or (both empty) no test."""
    subjects = [subject_a, subject_b] if subject_a.strip() or subject_b.strip() else None
    try:
        editors.set_subject_test(
            work,
            digest_id=digest_id,
            subjects=subjects,
            sample_percent=sample_percent,
            wait_minutes=wait_minutes,
            settings=get_settings(),
        )
    except lifecycle.UnknownDigest as exc:
        return _not_found(request, admin, str(exc))
    except InvalidInput as exc:
        return _digest_page(request, admin, session, digest_id, error=exc.message, status_code=422)
    except lifecycle.DigestActionError as exc:
        return _digest_page(request, admin, session, digest_id, error=str(exc), status_code=409)
    saved = "Subject test saved." if subjects else "No subject test."
    return redirect(f"/admin/digests/{digest_id}", f"Digest #{digest_id}: {saved}")


@router.post("/digests/{digest_id}/subject-test/pick")
def pick_subject(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    work: UnitOfWorkDep,
    digest_id: RowId,
    subject: Annotated[int, Form(ge=0, le=1)],
) -> Response:
    """The editor decides a waiting subject test: the rest go with this subject now."""
    try:
        editors.pick_subject(work, digest_id=digest_id, subject=subject)
    except lifecycle.UnknownDigest as exc:
        return _not_found(request, admin, str(exc))
    except (InvalidInput, lifecycle.DigestActionError) as exc:
        return _digest_page(request, admin, session, digest_id, error=str(exc), status_code=409)
    return redirect(f"/admin/digests/{digest_id}", f"Digest #{digest_id}: sending the rest.")


def _pinned_in_order(stories: list[int], orders: list[str]) -> list[int]:
    """The stories given a place (1, 2, …), by their place; a blank place is not pinned."""
    if len(stories) != len(orders):
        raise InvalidInput("order", "The list of stories was cut short; reload the page.")
    placed = []
    for article_id, place in zip(stories, orders, strict=True):
        if not place.strip():
            continue
        try:
            number = int(place)
        except ValueError:
            raise InvalidInput(
                "order", f"A story's place is a number (1 for the top), not {place.strip()!r}."
            ) from None
        placed.append((number, article_id))
    return [article_id for _, article_id in sorted(placed)]


@router.post("/digests/{digest_id:int}/test")
def test_send(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    work: UnitOfWorkDep,
    digest_id: RowId,
    to: FormText = "",
    which: FormText = "all",
    as_reader: FormText = "",
) -> Response:
    """Send the digest as it stands, marked [TEST], to the editor's addresses."""
    addresses = [a for a in to.replace("\n", ",").split(",") if a.strip()]
    try:
        test = editors.test_send(
            work,
            to=addresses,
            settings=get_settings(),
            digest_id=digest_id,
            language=which if which in LANGUAGE_TAGS else None,
            as_reader=as_reader.strip() if which == "reader" else None,
        )
    except lifecycle.UnknownDigest as exc:
        return _not_found(request, admin, str(exc))
    except InvalidInput as exc:
        return _digest_page(request, admin, session, digest_id, error=exc.message, status_code=422)
    except UnknownSubscriber as exc:
        return _digest_page(request, admin, session, digest_id, error=str(exc), status_code=404)
    except digests.NothingToSend as exc:
        return _digest_page(request, admin, session, digest_id, error=str(exc), status_code=409)
    copies = len(test.subjects)
    return redirect(
        f"/admin/digests/{digest_id}#tests",
        f"Test send #{test.id}: {copies} cop{'y' if copies == 1 else 'ies'} on the way to "
        f"{sum(r['outcome'] == 'queued' for r in test.recipients)} address(es); "
        "the outcome shows below within seconds.",
    )


@router.get("/digests/{digest_id:int}")
def digest_page(
    request: Request, admin: Admin, session: SessionDep, digest_id: RowId
) -> HTMLResponse:
    return _digest_page(request, admin, session, digest_id)


@router.get("/digests/{digest_id:int}/progress")
def digest_progress(admin: Admin, session: SessionDep, digest_id: RowId) -> Response:
    """What the progress bars poll (JSON): state, counts, the bar's widths and its words."""
    try:
        status = reports.digest_status(session, digest_id, with_subjects=False)
        time_zone = lifecycle.get_digest(session, digest_id).newsletter.time_zone
    except lifecycle.UnknownDigest as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404)
    return JSONResponse(
        {
            "id": status["id"],
            "state": status["state"],
            "final": status["state"] in lifecycle.FINAL_STATES,
            "poll_ms": poll_interval_ms(status),
            "counts": status["counts"],
            "progress": reports.progress(
                status["counts"], state=status["state"], note=status["note"]
            ),
            "banner": _banner(status, time_zone),
        }
    )


@router.post("/digests/{digest_id:int}/{action}")
def act_on_digest(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    work: UnitOfWorkDep,
    digest_id: RowId,
    action: Literal["cancel", "pause", "resume"],
) -> Response:
    """Cancel, pause or resume; a state that does not allow it is said plainly (409)."""
    act, done = ACTIONS[action]
    try:
        act(work, digest_id=digest_id)
    except lifecycle.UnknownDigest as exc:
        work.rollback()
        return _not_found(request, admin, str(exc))
    except lifecycle.DigestActionError as exc:
        work.rollback()
        return _digest_page(request, admin, session, digest_id, error=str(exc), status_code=409)
    return redirect(f"/admin/digests/{digest_id}", done.format(id=digest_id))


@router.get("/digests/{digest_id:int}/preview")
def preview_page(
    request: Request,
    admin: Admin,
    session: SessionDep,
    digest_id: RowId,
    subscriber: EmailQuery = "",
) -> HTMLResponse:
    """The preview as one reader (or a sample reader): subject, and the email in a frame."""
    try:
        digest = lifecycle.get_digest(session, digest_id)
    except lifecycle.UnknownDigest as exc:
        return _not_found(request, admin, str(exc))
    subscriber = subscriber.strip()
    error, status_code, subject = None, 200, None
    try:
        subject = _preview(session, digest_id, subscriber).subject
    except _PreviewRefused as exc:
        error, status_code = exc.message, exc.status_code
    frame_src = f"/admin/digests/{digest_id}/preview/email"
    if subscriber:
        frame_src += "?" + urlencode({"subscriber": subscriber})
    return admin_page(
        request,
        "digest_preview.html",
        admin,
        {
            "digest": digest,
            "subscriber": subscriber,
            "subject": subject,
            "error": error,
            "frame_src": frame_src,
        },
        status_code=status_code,
    )


@router.get("/digests/{digest_id:int}/preview/email")
def preview_email(
    admin: Admin, session: SessionDep, digest_id: RowId, subscriber: EmailQuery = ""
) -> HTMLResponse:
    """The email's HTML part exactly as that reader would get it, for the sandboxed frame."""
    try:
        result = _preview(session, digest_id, subscriber.strip())
    except _PreviewRefused as exc:
        content, status_code = f"<p>{escape(exc.message)}</p>", exc.status_code
    else:
        message = message_from_bytes(result.message.data, policy=policy.default)
        part = message.get_body(preferencelist=("html",))
        content, status_code = (str(part.get_content()) if part is not None else ""), 200
    return HTMLResponse(
        content, status_code=status_code, headers={"Content-Security-Policy": PREVIEW_POLICY}
    )


def poll_interval_ms(status: dict[str, Any]) -> int:
    """How soon a progress bar asks again: each second while something moves, else rarely."""
    due = status["scheduled_for"]
    starting_soon = (
        status["state"] == DigestState.SCHEDULED
        and due is not None
        and datetime.fromisoformat(due) <= utcnow() + SOON
    )
    return FAST_POLL_MS if status["state"] == DigestState.SENDING or starting_soon else SLOW_POLL_MS


class _PreviewRefused(Exception):
    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def _preview(session: Session, digest_id: int, subscriber: str) -> digests.Preview:
    """This digest's email for a reader, or why there is none (as a message and a status)."""
    try:
        digest = lifecycle.get_digest(session, digest_id)
        return digests.preview_digest(
            session, digest, settings=get_settings(), subscriber_email=subscriber or None
        )
    except lifecycle.UnknownDigest as exc:
        raise _PreviewRefused(str(exc), 404) from None
    except InvalidInput as exc:
        raise _PreviewRefused(exc.message, 422) from None
    except UnknownSubscriber as exc:
        raise _PreviewRefused(str(exc), 404) from None
    except digests.NothingToSend as exc:
        raise _PreviewRefused(str(exc), 409) from None


# Each action: the service (which commits, then queues what it calls for) and what is said.
ACTIONS: dict[str, tuple[Callable[..., Digest], str]] = {
    "cancel": (editors.cancel_digest, "Digest #{id} cancelled: nothing more of it will be sent."),
    "pause": (editors.pause_digest, "Digest #{id} paused."),
    "resume": (editors.resume_digest, "Digest #{id} resumed."),
}


def _digest_page(
    request: Request,
    admin: SignedIn,
    session: Session,
    digest_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        status = reports.digest_status(session, digest_id)
    except lifecycle.UnknownDigest as exc:
        return _not_found(request, admin, str(exc))
    digest = lifecycle.get_digest(session, digest_id)
    newsletter = digest.newsletter
    _decorate(status, newsletter.time_zone)
    return admin_page(
        request,
        "digest.html",
        admin,
        {
            "digest": status,
            "desk": _desk(session, digest) if shaping.editable(digest) else None,
            "test_sends": [trial.as_dict(t) for t in trial.recent(session, digest_id=digest_id)],
            "seed_list": ", ".join(trial.seed_list(get_settings())),
            "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGE_TAGS],
            "newsletter": newsletter,
            "outcomes": outcomes.digest_outcomes(session, digest_id),
            "tracking_clicks": get_settings().track_clicks,
            "test_decision_local": _decision_local(digest, newsletter.time_zone),
            **_report(session, digest),
            "zone_now": clock.zone_label(newsletter.time_zone, utcnow()),
            "error": error,
        },
        status_code=status_code,
    )


def _report(session: Session, digest: Digest) -> dict[str, Any]:
    """What the digest page shows of its readers' clicks, once it has gone out."""
    if digest.state in (DigestState.DRAFT, DigestState.SCHEDULED):
        return {"report": None}
    settings = get_settings()
    report = analytics.digest_report(session, digest_id=digest.id)
    return {
        "report": report,
        "report_chart": story_chart(report),
        "tracking": {"clicks": settings.track_clicks, "opens": settings.track_opens},
        "subject_test": digest.subject_test,
        "percent": charts.percent,
    }


def story_chart(report: analytics.DigestReport) -> Markup | None:
    """Readers who clicked each story, as bars (the ten most read)."""
    if not report.stories:
        return None
    return charts.bar_chart(
        title="Readers who clicked each story",
        bars=[charts.Bar(s.title[:40], s.readers) for s in report.stories[:10]],
        x_label="readers who clicked",
    )


@router.get("/digests/{digest_id}/report.csv")
def digest_report_csv(digest_id: RowId, admin: Admin, session: SessionDep) -> Response:
    """The digest's report as a spreadsheet (what GET /api/digests/{id}/report.csv gives)."""
    try:
        lifecycle.get_digest(session, digest_id)
    except lifecycle.UnknownDigest:
        return Response("No such digest.", status_code=404, media_type="text/plain")
    return report_download(session, digest_id)


def _desk(session: Session, digest: Digest) -> dict[str, Any]:
    """What the editor's desk shows: each language's note and subject, and the stories of
    the window as it stands (with the pinned ones first, wherever they were published)."""
    since, until = composer.digest_window(
        session,
        newsletter_id=digest.newsletter_id,
        since=digest.since,
        now=utcnow(),
        first_window=timedelta(hours=get_settings().digest_first_window_hours),
    )
    pinned = list(digest.pinned or ())
    excluded = set(digest.excluded or ())
    shown = composer.candidate_articles(
        session, since=since, until=until, shaping=composer.Shaping(tuple(pinned))
    )
    # Left-out stories stay on the desk, so that they can be taken back.
    shown += [a for a in composer.articles_by_id(session, excluded) if a not in shown]
    return {
        "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGE_TAGS],
        "intro": digest.intro or {},
        "subjects": digest.subjects or {},
        "stories": [
            {
                "id": a.id,
                "title": a.title,
                "language": a.language,
                "topics": ", ".join(a.topics or ()),
                "place": pinned.index(a.id) + 1 if a.id in pinned else "",
                "excluded": a.id in excluded,
            }
            for a in shown[:DESK_STORIES]
        ],
        "more": max(0, len(shown) - DESK_STORIES),
    }


def _form_page(
    request: Request,
    admin: SignedIn,
    session: Session,
    *,
    form: dict[str, str] | None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    newsletters = list_newsletters(session)
    return admin_page(
        request,
        "digest_new.html",
        admin,
        {
            "newsletters": newsletters,
            "error": error,
            "form": form
            or {
                "newsletter": newsletters[0].slug if newsletters else "",
                "window": "last",
                "since": "",
                "subject": "",
            },
        },
        status_code=status_code,
    )


def _send_moment(digest: Digest, send: str, send_at: str) -> datetime | None:
    """When a draft is to go: None for now, or a time on the newsletter's clock (UTC).
    A digest that is no draft, or a time already gone, is refused with a sentence."""
    if "schedule" not in lifecycle.allowed_actions(digest.state):
        raise lifecycle.DigestActionError(
            f"Digest {digest.id} is {digest.state}; only a draft can be sent or scheduled."
        )
    if send != "at":
        return None
    moment = _local_moment("send_at", send_at, digest.newsletter.time_zone)
    if moment < utcnow() - PAST_GRACE:
        raise InvalidInput(
            "send_at", "That sending time has passed; choose a later one, or send now."
        )
    return moment


def _banner(status: dict[str, Any], time_zone: str) -> str:
    due = status["scheduled_for"]
    return reports.banner(
        status["state"],
        scheduled_for_local=_local(datetime.fromisoformat(due), time_zone) if due else None,
        note=status["note"],
        subject_test=(status.get("subject_test") or {}).get("phase"),
    )


def _newsletter(session: Session, slug: str) -> Newsletter:
    try:
        return get_by_slug(session, slug.strip())
    except UnknownNewsletter:
        raise InvalidInput("newsletter", "Choose one of the newsletters.") from None


def _local_moment(field: str, value: str, time_zone: str) -> datetime:
    """A datetime-local value, on the newsletter's own clock unless it says otherwise; UTC."""
    words = {"since": "the start of the window", "send_at": "the sending time"}[field]
    moment = clock.to_utc(value, time_zone=time_zone, field=field, label=words)
    assert moment is not None  # a form field is text, never None
    return moment


def _decision_local(digest: Digest, time_zone: str) -> str | None:
    """When a waiting subject test is decided, on the newsletter's clock."""
    due = subject_test.decision_due_at(digest)
    return _local(due, time_zone) if due else None


def _local(moment: datetime, time_zone: str) -> str:
    """A time as the page shows it: on the newsletter's clock, its zone named."""
    return clock.local_text(moment, time_zone)


def _decorate(status: dict[str, Any], time_zone: str) -> None:
    """Add what a page shows beside the status: the bar, finality, times on local clocks."""
    status["progress"] = reports.progress(
        status["counts"], state=status["state"], note=status["note"]
    )
    status["final"] = status["state"] in lifecycle.FINAL_STATES
    status["poll_ms"] = poll_interval_ms(status)
    for key in ("scheduled_for", "since", "until", "started_at", "finished_at"):
        iso = status.get(key)
        status[f"{key}_local"] = _local(datetime.fromisoformat(iso), time_zone) if iso else None
    status["banner"] = _banner(status, time_zone)
    state = status["state"]
    actions = lifecycle.allowed_actions(state)
    status["can_send"] = "schedule" in actions
    status["can_pause"] = "pause" in actions
    status["can_resume"] = "resume" in actions
    status["can_cancel"] = "cancel" in actions


def _not_found(request: Request, admin: SignedIn, message: str) -> HTMLResponse:
    return message_page(request, admin, "Not found", message, status_code=404)
