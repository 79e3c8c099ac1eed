"""Readers' pages: signup, confirmation, one-click unsubscribe, preferences and their data."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import zoneinfo
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from newsletter.app import readers
from newsletter.app.unit_of_work import UnitOfWork
from newsletter.articles.store import get_article_by_slug, public_topics
from newsletter.core import clock, db
from newsletter.core.config import LANGUAGES, Settings, get_settings
from newsletter.core.i18n import (
    LANGUAGE_NAMES,
    LANGUAGE_TAGS,
    N_,
    Phrase,
    catalog_phrase,
    duration,
    local_date_time,
)
from newsletter.core.models import Subscriber, SubscriptionStatus
from newsletter.core.tokens import (
    Purpose,
    TokenClaims,
    TokenError,
    make_reader_token,
    read_reader_token,
    read_token,
)
from newsletter.core.validation import InvalidInput, refuse_lone_surrogates
from newsletter.digests import render as digests
from newsletter.digests.batch import longest_in_flight
from newsletter.subscribers import newsletters as newsletter_store
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.signup_limits import SignupLimited
from newsletter.web.deps import (
    OptionalRowIdQuery,
    RowId,
    SessionDep,
    SettingsDep,
    UnitOfWorkDep,
    page,
    refusals,
    wants_json,
)
from newsletter.web.headers import is_head

log = logging.getLogger("newsletter.web")
router = APIRouter()

# The readers' pages' one script: on the signup form it proposes the browser's time zone
# (the field stays editable, and without scripts it is simply empty: the default zone).
# The pages' Content-Security-Policy (web/app.py) lets this exact text run, by its hash.
ZONE_SCRIPT = (
    'var f=document.getElementById("time_zone");'
    'if(f&&!f.value){try{f.value=Intl.DateTimeFormat().resolvedOptions().timeZone||""}'
    "catch(e){}}"
)
ZONE_SCRIPT_SOURCE = (
    "'sha256-" + base64.b64encode(hashlib.sha256(ZONE_SCRIPT.encode()).digest()).decode() + "'"
)

# What every signup hears, known address or not: nothing may tell them apart. A second
# signup within the confirmation interval sends no second message; the answer says so, to
# everyone alike. This is the JSON answer, in English for programs; signup.html's answer
# says the same in the page's language.
SIGNUP_ANSWER = (
    "Thank you. If this address can receive our newsletters, a message is on its way: "
    "follow the link in it to confirm your subscription. If one was sent to this address "
    "a few minutes ago, no second one is sent for a while: look for it in your inbox, and "
    "in your spam folder."
)
# What every signup hears while the workers' broker does not answer.
SIGNUP_UNAVAILABLE = N_("We cannot take signups at the moment. Please try again in a minute.")
# What every signup over the hourly limits hears, whichever limit and whatever the address.
SIGNUP_LIMITED = N_(
    "There have been too many signups from here or for this address in the last hour. "
    "Please try again later."
)


@router.get("/", response_class=HTMLResponse)
def signup_page(
    request: Request,
    session: SessionDep,
    newsletter: str = "",
) -> HTMLResponse:
    """The signup form; `?newsletter=` ticks that one (the archive's and a web copy's call
    to subscribe), when it exists: any other value is ignored, never refused, since the
    page must open whatever link led to it."""
    context = _signup_context(session)
    known = {n.slug for n in context["newsletters"]}
    context["preselected"] = newsletter if newsletter in known else None
    return page(request, "signup.html", context)


@router.post(
    "/subscribe",
    status_code=202,
    responses=refusals(413, 422, 429, 503),
)
async def subscribe(request: Request, work: UnitOfWorkDep, settings: SettingsDep) -> Response:
    as_json = wants_json(request)
    form: subscribers.SignupForm | None = None
    refused: InvalidInput | None = None
    try:
        form = await _signup_form(request, as_json=as_json)
    except InvalidInput as exc:
        refused = exc
    # Reading the body is the only awaiting; the rest talks to the database and Redis, and
    # must not hold the event loop that every other request is waiting on.
    return await run_in_threadpool(
        _subscribe, request, work, settings, form, refused, as_json=as_json
    )


def _subscribe(
    request: Request,
    work: UnitOfWork,
    settings: Settings,
    form: subscribers.SignupForm | None,
    refused: InvalidInput | None,
    *,
    as_json: bool,
) -> Response:
    ip = request.client.host if request.client else None
    try:
        if refused is not None:
            raise refused
        assert form is not None
        readers.sign_up(work, form=form, ip=ip, settings=settings)
    except readers.TooManySignups as exc:
        return _signup_limited(request, exc.limited, as_json=as_json)
    except readers.SignupsUnavailable as exc:
        log.warning("signup not taken: the broker does not answer (%s)", exc)
        return _signups_unavailable(request, as_json=as_json)
    except InvalidInput as exc:
        work.rollback()
        if as_json:
            return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=422)
        context = {**_signup_context(work.session), **_refusal(exc), "form": form}
        return page(request, "signup.html", context, status_code=422)
    if as_json:
        return JSONResponse({"status": "accepted", "detail": SIGNUP_ANSWER}, status_code=202)
    return page(request, "signup.html", {"answered": True}, status_code=202)


@router.get("/confirm/{token}", response_class=HTMLResponse, responses=refusals(400, 404))
def confirm(token: str, request: Request, work: UnitOfWorkDep, settings: SettingsDep) -> Response:
    claims = _claims(settings, Purpose.CONFIRM, token)
    if is_head(request):
        # A link checker's HEAD confirms nobody: only a reader's visit does.
        return HTMLResponse("")
    subscriber = readers.confirm(
        work,
        subscriber_id=claims.subscriber_id,
        newsletter_ids=claims.newsletter_ids,
        issued_at=claims.issued_at,
    )
    # A link made before the reader left does not bring them back (subscribers.confirm):
    # the page says they are not subscribed, and how to come back.
    result = subscribers.confirmation_result(subscriber, claims.newsletter_ids)
    return page(
        request,
        "confirm.html",
        {"result": result, "email": subscriber.email},
        language=subscriber.language,
    )


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, responses=refusals(400))
def unsubscribe_page(
    token: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    claims = _claims(settings, Purpose.UNSUBSCRIBE, token)
    return _unsubscribe_page(request, session, settings, claims, token, state="ask")


@router.post("/unsubscribe/{token}", responses=refusals(400, 413))
async def unsubscribe(
    token: str, request: Request, work: UnitOfWorkDep, settings: SettingsDep
) -> Response:
    """RFC 8058 one-click unsubscribe: no cookie, no login, whatever the body says."""
    claims = _claims(settings, Purpose.UNSUBSCRIBE, token)
    # A mail client's RFC 8058 POST asks for no page; a person pressing the button does.
    from_page = "text/html" in request.headers.get("accept", "")
    source = readers.FROM_OUR_PAGE if from_page else "one-click"
    left = await run_in_threadpool(
        lambda: readers.unsubscribe(
            work,
            subscriber_id=claims.subscriber_id,
            newsletter_id=claims.newsletter_id,
            source=source,
        )
    )
    if left:
        await _after_messages_in_flight(claims.subscriber_id, settings)
        # Queued from the threadpool: a publish to the broker blocks.
        await run_in_threadpool(
            lambda: readers.say_goodbye(
                work,
                subscriber_id=claims.subscriber_id,
                newsletter_ids=left,
                source=source,
                settings=settings,
            )
        )
    if from_page:
        # A person: the page names what they left and offers the way back.
        return await run_in_threadpool(
            _unsubscribe_page, request, work.session, settings, claims, token, state="done"
        )
    return page(
        request,
        "message.html",
        {
            "title": N_("You are unsubscribed"),
            "message": N_("You will receive no more of these emails. We are sorry to see you go."),
            "preferences_token": None,
        },
        language=await run_in_threadpool(_reader_language, work.session, claims.subscriber_id),
    )


@router.post(
    "/unsubscribe/{token}/resubscribe",
    response_class=HTMLResponse,
    responses=refusals(400, 413),
)
def resubscribe(
    token: str, request: Request, work: UnitOfWorkDep, settings: SettingsDep
) -> Response:
    """The unsubscribe page's "subscribe again", a moment after leaving: a POST with the
    unsubscribe link's token (a GET, which mail scanners make, changes nothing)."""
    claims = _claims(settings, Purpose.UNSUBSCRIBE, token)
    back = readers.resubscribe(
        work, subscriber_id=claims.subscriber_id, newsletter_id=claims.newsletter_id
    )
    state = "back" if back else "too late"
    return _unsubscribe_page(request, work.session, settings, claims, token, state=state)


def _unsubscribe_page(
    request: Request,
    session: Session,
    settings: Settings,
    claims: TokenClaims,
    token: str,
    *,
    state: str,
) -> Response:
    """The unsubscribe page, reached by the token: the address and the newsletter named,
    and the ways back (subscribe again, the preferences) while the reader may take them."""
    try:
        subscriber = subscribers.get_subscriber(session, claims.subscriber_id)
    except subscribers.UnknownSubscriber:  # erased: nothing left to name, nothing to mail
        return page(request, "unsubscribe.html", {"state": "erased", "token": token})
    names = {
        n.id: newsletter_store.newsletter_text(n, subscriber.language).name
        for n in newsletter_store.list_newsletters(session)
    }
    named = [
        s
        for s in subscriber.subscriptions
        if claims.newsletter_id is None or s.newsletter_id == claims.newsletter_id
    ]
    if state == "ask" and not any(s.status != SubscriptionStatus.UNSUBSCRIBED for s in named):
        state = "already"
    context = {
        "state": state,
        "token": token,
        "email": subscriber.email,
        "newsletter_names": [names[claims.newsletter_id]]
        if claims.newsletter_id in names
        else [names[s.newsletter_id] for s in named if s.newsletter_id in names],
        "all_newsletters": claims.newsletter_id is None,
        "may_resubscribe": any(subscribers.may_resubscribe(s, subscriber) for s in named),
        "preferences_token": _preferences_token(settings, subscriber),
    }
    return page(request, "unsubscribe.html", context, language=subscriber.language)


def _preferences_token(settings: Settings, subscriber: Subscriber) -> str | None:
    """A preferences link for the unsubscribe page, when it may offer one."""
    if not subscribers.may_open_preferences_from_unsubscribe(subscriber):
        return None
    return make_reader_token(
        settings.secret_key, Purpose.PREFERENCES, subscriber.id, subscriber.token_version
    )


@router.get("/preferences/{token}", response_class=HTMLResponse, responses=refusals(400, 404))
def preferences_page(
    token: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    loaded = _reader(session, settings, token)
    return page(
        request,
        "preferences.html",
        _preferences_context(session, loaded, token),
        language=loaded.language,
    )


@router.post(
    "/preferences/{token}",
    response_class=HTMLResponse,
    responses=refusals(400, 404, 413, 422),
)
async def preferences_update(
    token: str, request: Request, work: UnitOfWorkDep, settings: SettingsDep
) -> Response:
    form = await request.form()
    response, left = await run_in_threadpool(
        _update_preferences, request, work, settings, token, form
    )
    if left is not None:  # newsletters left: as for an unsubscribe, see there
        await _after_messages_in_flight(left, settings)
    return response


def _update_preferences(
    request: Request, work: UnitOfWork, settings: Settings, token: str, form: FormData
) -> tuple[Response, int | None]:
    """The page to answer with, and the reader's id when they left a newsletter."""
    session = work.session
    loaded = _reader(session, settings, token)
    chosen = subscribers.Preferences(
        name=_field(form, "name"),
        language=_field(form, "language"),
        topics=[str(t) for t in form.getlist("topics")],
        newsletters=[str(n) for n in form.getlist("newsletters")],
        time_zone=_field(form, "time_zone"),
    )
    try:
        left_one = readers.update_preferences(work, subscriber_id=loaded.id, preferences=chosen)
    except InvalidInput as exc:
        # Nothing saved; the form comes back as the reader filled it, every other edit kept.
        context = {**_preferences_context(session, loaded, token), **_refusal(exc), "form": chosen}
        return page(
            request, "preferences.html", context, status_code=422, language=loaded.language
        ), None
    left = loaded.id if left_one else None
    context = {**_preferences_context(session, loaded, token), "saved": True}
    return page(request, "preferences.html", context, language=loaded.language), left


@router.post(
    "/preferences/{token}/leave",
    response_class=HTMLResponse,
    responses=refusals(400, 404, 413),
)
async def unsubscribe_from_everything(
    token: str, request: Request, work: UnitOfWorkDep, settings: SettingsDep
) -> Response:
    """The preferences page's "unsubscribe from everything": every newsletter left at once,
    then the goodbye, as for an unsubscribe from our page."""
    loaded = await run_in_threadpool(_reader, work.session, settings, token)
    reader_id = loaded.id
    left = await run_in_threadpool(
        lambda: readers.unsubscribe(
            work, subscriber_id=reader_id, newsletter_id=None, source=readers.FROM_OUR_PAGE
        )
    )
    if left:
        await _after_messages_in_flight(reader_id, settings)
        await run_in_threadpool(
            lambda: readers.say_goodbye(
                work,
                subscriber_id=reader_id,
                newsletter_ids=left,
                source=readers.FROM_OUR_PAGE,
                settings=settings,
            )
        )
    return await run_in_threadpool(_left_everything_page, request, work.session, reader_id, token)


def _left_everything_page(
    request: Request, session: Session, reader_id: int, token: str
) -> Response:
    subscriber = subscribers.get_subscriber(session, reader_id)
    context: dict[str, Any] = {
        "state": "done",
        "token": None,
        "email": subscriber.email,
        "newsletter_names": [],
        "all_newsletters": True,
        "may_resubscribe": False,
        "preferences_token": token,
    }
    return page(request, "unsubscribe.html", context, language=subscriber.language)


@router.post(
    "/preferences/{token}/records",
    response_class=HTMLResponse,
    responses=refusals(400, 404, 413),
)
async def records_choice(
    token: str, request: Request, work: UnitOfWorkDep, settings: SettingsDep
) -> Response:
    """The reader turns per-reader records of their clicks off (deleting what was kept),
    or on again."""
    form = await request.form()
    allowed = _field(form, "records") == "on"
    return await run_in_threadpool(_records_choice, request, work, settings, token, allowed)


def _records_choice(
    request: Request, work: UnitOfWork, settings: Settings, token: str, allowed: bool
) -> Response:
    loaded = _reader(work.session, settings, token)
    readers.set_records(work, subscriber_id=loaded.id, allowed=allowed)
    context = {**_preferences_context(work.session, loaded, token), "records_saved": True}
    return page(request, "preferences.html", context, language=loaded.language)


# What a reader who asked for their data, or for its erasure, is told, whether or not a
# link could go (sent a moment ago already, or mail cannot reach them).
DATA_LINK_SENT = {
    "export": lambda **values: N_(
        "We are sending a link to your data to %(email)s. It works for %(expiry)s; "
        "open it from that mailbox to download everything we keep about you.",
        **values,
    ),
    "erase": lambda **values: N_(
        "We are sending a link to %(email)s to confirm the erasure. It works for "
        "%(expiry)s; nothing is erased until you open it and confirm.",
        **values,
    ),
}


@router.post(
    "/preferences/{token}/data", response_class=HTMLResponse, responses=refusals(400, 404, 413)
)
def request_data(
    token: str, request: Request, work: UnitOfWorkDep, settings: SettingsDep
) -> Response:
    """A link to the reader's data, mailed to their address (a preferences link, which may
    have been forwarded, does not hand the data over by itself)."""
    loaded = _reader(work.session, settings, token)
    readers.request_data_link(work, subscriber_id=loaded.id, action="export")
    return _data_link_sent(request, settings, loaded, "export")


@router.post(
    "/preferences/{token}/erase",
    response_class=HTMLResponse,
    responses=refusals(400, 404, 413, 422),
)
async def request_erasure(
    token: str, request: Request, work: UnitOfWorkDep, settings: SettingsDep
) -> Response:
    """A link to confirm the erasure, mailed to the reader's address: nothing is erased yet."""
    form = await request.form()
    return await run_in_threadpool(_request_erasure, request, work, settings, token, form)


def _request_erasure(
    request: Request, work: UnitOfWork, settings: Settings, token: str, form: FormData
) -> Response:
    loaded = _reader(work.session, settings, token)
    if form.get("confirm") != "yes":
        context = {
            **_preferences_context(work.session, loaded, token),
            "error": N_("Tick the box to confirm that you want everything about you erased."),
            "error_field": "confirm",
        }
        return page(request, "preferences.html", context, status_code=422, language=loaded.language)
    readers.request_data_link(work, subscriber_id=loaded.id, action="erase")
    return _data_link_sent(request, settings, loaded, "erase")


@router.get("/my-data/{token}", responses=refusals(400, 404))
def download_data(token: str, session: SessionDep, settings: SettingsDep) -> Response:
    """Everything kept about the reader, from the link mailed to them (GDPR article 15)."""
    loaded = _data_link_reader(session, settings, Purpose.EXPORT, token)
    data = subscribers.export_data(session, subscriber_id=loaded.id)
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="my-newsletter-data.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/erase/{token}", response_class=HTMLResponse, responses=refusals(400, 404))
def erase_page(
    token: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    """The page the erasure link opens: a button, so that a mail scanner fetching the link
    erases nothing."""
    loaded = _data_link_reader(session, settings, Purpose.ERASE, token)
    return page(
        request, "erase.html", {"token": token, "email": loaded.email}, language=loaded.language
    )


@router.post("/erase/{token}", response_class=HTMLResponse, responses=refusals(400, 404, 413))
async def erase(
    token: str, request: Request, work: UnitOfWorkDep, settings: SettingsDep
) -> Response:
    subscriber_id, language = await run_in_threadpool(_leave_before_erasure, work, settings, token)
    # Unsubscribed and committed first: a message already on its way goes before the
    # erasure is confirmed, as for an unsubscribe.
    await _after_messages_in_flight(subscriber_id, settings)
    await run_in_threadpool(lambda: readers.erase(work, subscriber_id=subscriber_id))
    return page(
        request,
        "message.html",
        {
            "title": N_("Your data is erased"),
            "message": N_(
                "Everything we kept about you is deleted. We keep only a one-way hash "
                "of your address, so that we never write to it again."
            ),
        },
        # Read before the erasure: the reader's own language, for the last page they see.
        language=language,
    )


def _leave_before_erasure(work: UnitOfWork, settings: Settings, token: str) -> tuple[int, str]:
    loaded = _data_link_reader(work.session, settings, Purpose.ERASE, token)
    language = loaded.language
    readers.leave_before_erasure(work, subscriber_id=loaded.id)
    return loaded.id, language


def _data_link_sent(
    request: Request, settings: Settings, subscriber: Subscriber, action: str
) -> Response:
    seconds = settings.data_link_max_age_seconds
    message = DATA_LINK_SENT[action](
        email=subscriber.email, expiry=lambda language: duration(seconds, language)
    )
    return page(
        request,
        "message.html",
        {"title": N_("Check your inbox"), "message": message},
        language=subscriber.language,
    )


@router.get("/articles/{slug}", response_class=HTMLResponse, responses=refusals(404))
def article_page(
    slug: str, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    article = get_article_by_slug(session, slug)
    if article is None or article.hidden:
        raise HTTPException(status_code=404, detail=N_("There is no such article."))
    # The page speaks the article's language, around it and in its date; a visitor is
    # anonymous here, so the time is on the newsletter's clock.
    return page(
        request,
        "article.html",
        {
            "article": article,
            "paragraphs": article.body.split("\n\n"),
            "article_lang": LANGUAGE_TAGS.get(article.language, article.language),
            # Where it came from, when that is a public address; never an importing
            # machine's file path.
            **public_source(article.source),
            "published": local_date_time(
                article.published_at, settings.default_time_zone, article.language
            ),
        },
        language=article.language,
    )


@router.get("/digests/{digest_id}", response_class=HTMLResponse, responses=refusals(404, 422))
def digest_web_copy(
    digest_id: RowId,
    session: SessionDep,
    settings: SettingsDep,
    variant: OptionalRowIdQuery = None,
) -> Response:
    """The "view in browser" copy of a sent digest, without any reader's links."""
    try:
        html = digests.web_copy(session, digest_id=digest_id, variant_id=variant, settings=settings)
    except LookupError:
        raise HTTPException(status_code=404, detail=N_("There is no such digest.")) from None
    return HTMLResponse(html)


def _signup_limited(request: Request, limited: SignupLimited, *, as_json: bool) -> Response:
    """429, the same words for every address: known, new or suppressed alike."""
    log.info("signup refused: over the hourly limit per %s", limited.by)
    return _try_later(request, SIGNUP_LIMITED, 429, limited.retry_after, as_json=as_json)


def _signups_unavailable(request: Request, *, as_json: bool) -> Response:
    """503: the signup was not taken (it is not recorded anywhere), the same for every address."""
    return _try_later(request, SIGNUP_UNAVAILABLE, 503, 60, as_json=as_json)


@router.get(digests.TEST_LINK_PATH, response_class=HTMLResponse)
def test_link(request: Request) -> HTMLResponse:
    """Where the reader links of a test send lead: they act for nobody."""
    return page(
        request,
        "message.html",
        {
            "title": N_("This link came in a test email"),
            "message": N_(
                "It belongs to a test of a digest, sent to its editors only: it does nothing. "
                "In the digest itself, this link lets each reader manage their subscription."
            ),
        },
    )


def _try_later(
    request: Request, message: Phrase, status_code: int, retry_after: int, *, as_json: bool
) -> Response:
    """A signup not taken now: the words, with Retry-After, as JSON or as a page."""
    headers = {"Retry-After": str(retry_after)}
    if as_json:
        return JSONResponse({"detail": message}, status_code=status_code, headers=headers)
    response = page(
        request,
        "message.html",
        {"title": N_("Please try again later"), "message": message},
        status_code=status_code,
    )
    response.headers.update(headers)
    return response


async def _signup_form(request: Request, *, as_json: bool) -> subscribers.SignupForm:
    if as_json:
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: JSON nested thousands deep.
            raise InvalidInput(
                "body", "The request body is not valid JSON (or is nested too deeply)."
            ) from None
        if not isinstance(data, dict):
            raise InvalidInput("body", "The request body must be a JSON object.")
        refuse_lone_surrogates(data)
        # Absent: the default newsletter; an empty list is asking for none (refused).
        newsletters = data.get("newsletters")
        if isinstance(newsletters, str):
            newsletters = [newsletters]
        if newsletters is not None and (
            not isinstance(newsletters, list) or not all(isinstance(n, str) for n in newsletters)
        ):
            raise InvalidInput("newsletters", "Newsletters must be a list of names.")
        for key in ("email", "name", "language", "time_zone"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise InvalidInput(key, f"The {key.replace('_', ' ')} must be text.")
        return subscribers.SignupForm(
            email=data.get("email") or "",
            name=data.get("name"),
            newsletters=newsletters,
            topics=data.get("topics"),
            language=data.get("language"),
            time_zone=data.get("time_zone"),
        )
    form = await request.form()
    # Our page sends an empty `newsletters` with its list, so that none ticked reads as
    # none (refused), not as a form without the list (a script's: the default newsletter).
    ticked = form.getlist("newsletters")
    return subscribers.SignupForm(
        email=_field(form, "email") or "",
        name=_field(form, "name"),
        newsletters=[str(n) for n in ticked] if ticked else None,
        topics=[str(t) for t in form.getlist("topics")],
        language=_field(form, "language"),
        time_zone=_field(form, "time_zone"),
    )


def _refusal(exc: InvalidInput) -> dict[str, Any]:
    """A refused form's words for its page: the rule's own sentence, in the page's language
    when the catalogs have it (`error_precise`), else the page says what is wrong with the
    field in its own words (templates/pages/_reader_forms.html)."""
    phrase = catalog_phrase(exc.message)
    return {
        "error": phrase or exc.message,
        "error_field": _form_field(exc),
        "error_precise": phrase is not None,
    }


def _form_field(exc: InvalidInput) -> str:
    """The form field a refusal is shown next to (validation names "time zone" in words)."""
    return exc.field.replace(" ", "_")


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _claims(settings: Settings, purpose: Purpose, token: str) -> TokenClaims:
    """The token's claims; a TokenError becomes a 400 page in newsletter.web.app."""
    return read_token(
        settings.secret_key, purpose, token, max_age=settings.confirm_token_max_age_seconds
    )


def _reader(session: Session, settings: Settings, token: str) -> Subscriber:
    """The reader of a preferences link of their current token version."""
    claims = read_reader_token(settings.secret_key, Purpose.PREFERENCES, token)
    return _current_reader(session, claims.subscriber_id, claims.version)


def _data_link_reader(
    session: Session, settings: Settings, purpose: Purpose, token: str
) -> Subscriber:
    """The reader of a link mailed for their data or its erasure, while it is fresh."""
    try:
        claims = read_reader_token(
            settings.secret_key, purpose, token, max_age=settings.data_link_max_age_seconds
        )
    except TokenError as exc:
        if not exc.expired:
            raise
        raise HTTPException(
            status_code=400,
            detail=N_("This link has expired. Ask for a new one on your preferences page."),
        ) from None
    return _current_reader(session, claims.subscriber_id, claims.version)


def _current_reader(session: Session, subscriber_id: int, version: int) -> Subscriber:
    try:
        return subscribers.reader_of_link(session, subscriber_id=subscriber_id, version=version)
    except subscribers.LinkWithdrawn as exc:
        # Its words as given (a Phrase): the page writes them in the visitor's language.
        raise HTTPException(status_code=400, detail=exc.args[0]) from None


def _reader_language(session: Session, subscriber_id: int) -> str | None:
    """The reader's stored language, for the pages their links open (None: gone since)."""
    subscriber = session.get(Subscriber, subscriber_id)
    return subscriber.language if subscriber is not None else None


async def _after_messages_in_flight(subscriber_id: int, settings: Settings) -> None:
    """Return once no message to this reader is on the wire (see sends_in_flight).

    The looking is done in the threadpool, the waiting here: a burst of unsubscribes
    during a slow send holds no thread while it waits.
    """
    timeout = longest_in_flight(settings)
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        try:
            in_flight = await run_in_threadpool(_count_in_flight, subscriber_id, timeout)
        except SQLAlchemyError as exc:
            # The unsubscribe is committed: answer it, rather than a 500 that says it failed.
            log.warning(
                "could not look for messages in flight (%s)",
                type(exc).__name__,
                extra={"subscriber_id": subscriber_id},
            )
            return
        if not in_flight:
            return
        if time.monotonic() >= deadline:
            log.warning(
                "a message was still being sent %.0f s after the reader left",
                timeout,
                extra={"subscriber_id": subscriber_id},
            )
            return
        await anyio.sleep(pause)
        pause = min(pause * 2, 0.25)


def _count_in_flight(subscriber_id: int, timeout: float) -> int:
    with db.session_scope() as session:
        return subscribers.sends_in_flight(
            session, subscriber_id=subscriber_id, within=timedelta(seconds=timeout)
        )


def public_source(source: str) -> dict[str, str]:
    """An article's source as a page may show it: a web address and its host, or nothing."""
    parts = urlsplit(source.strip())
    if parts.scheme in ("http", "https") and parts.hostname:
        return {"source_url": source.strip(), "source_host": parts.hostname}
    return {}


def _signup_context(session: SessionDep) -> dict[str, Any]:
    return {
        "newsletters": newsletter_store.list_newsletters(session),
        "topics": public_topics(session),
        "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        "zones": _zone_choices(clock.utcnow().strftime("%Y-%m-%dT%H")),
        "zone_script": ZONE_SCRIPT,
        "form": None,
    }


# Names zoneinfo lists that are not places a reader lives in.
_NOT_PLACES = frozenset({"Factory", "localtime", "posixrules"})


@lru_cache(maxsize=2)
def _zone_choices(hour: str) -> list[tuple[str, str]]:
    """Every zone this machine knows, with its offset at that hour: ("Asia/Macau",
    "Asia/Macau (UTC+8)"), for the zone list (offsets change with summer time)."""
    at = datetime.fromisoformat(f"{hour}:00+00:00")
    return [
        (name, clock.zone_label(name, at))
        for name in sorted(zoneinfo.available_timezones() - _NOT_PLACES)
    ]


def _preferences_context(session: SessionDep, subscriber: Subscriber, token: str) -> dict[str, Any]:
    context = _signup_context(session)
    subscribed = {
        s.newsletter_id
        for s in subscriber.subscriptions
        if s.status == SubscriptionStatus.SUBSCRIBED
    }
    topics = sorted(set(context["topics"]) | set(subscriber.topics))
    return {
        **context,
        "subscriber": subscriber,
        "subscribed": subscribed,
        "topics": topics,
        "token": token,
        "zone_label": clock.zone_label(subscriber.time_zone, clock.utcnow()),
        "records": _records(subscriber),
    }


def _records(subscriber: Subscriber) -> dict[str, Any]:
    """What the preferences page says is recorded when this reader reads."""
    settings = get_settings()
    return {
        "clicks": settings.track_clicks,
        "opens": settings.track_opens,
        "per_reader": settings.track_readers and (settings.track_clicks or settings.track_opens),
        "refused": subscriber.tracking_refused,
        "days": settings.analytics_days,
    }
