"""Admin dashboard sign-in: a signed session cookie, CSRF tokens, and wrong tokens slowed."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from newsletter.app import admin_sessions
from newsletter.app.admin_sessions import SignedIn
from newsletter.core import db
from newsletter.core.config import Settings, get_settings
from newsletter.web.deps import SessionDep, templates

SESSION_COOKIE = "newsletter_admin"
LOGIN_COOKIE = "newsletter_admin_login"
NOTICE_COOKIE = "newsletter_admin_notice"
COOKIE_PATH = "/admin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# The pause after a wrong token doubles with each attempt of the client's window, to this.
MAX_SIGNIN_DELAY_SECONDS = 60.0

router = APIRouter(prefix="/admin", include_in_schema=False)


class SignInRequired(Exception):
    """No live admin session: browsers go to the sign-in page, scripts get a 401."""


class CSRFRefused(Exception):
    """A form that did not carry this session's CSRF token."""


def current_admin(request: Request, session: SessionDep) -> SignedIn:
    """The signed-in admin of this request, or SignInRequired."""
    found = signed_in_admin(session, request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise SignInRequired()
    return found


def signed_in_admin(session: Session, cookie: str | None) -> SignedIn | None:
    """The live admin session a session cookie names; None for none, a forged or an old one."""
    settings = get_settings()
    if not cookie:
        return None
    try:
        session_id = str(_cookie_serializer(settings).loads(cookie))
    except BadSignature:
        return None
    return admin_sessions.find(session, session_id, admin_token=settings.admin_token)


# Posts the dashboard reads from someone not signed in.
OPEN_TO_ANYONE = frozenset({"/admin/login"})


def live_session(cookie: str | None) -> SignedIn | None:
    """signed_in_admin, in a database session of its own (for code outside a route)."""
    if not cookie:
        return None
    with db.session_scope() as session:
        return signed_in_admin(session, cookie)


Admin = Annotated[SignedIn, Depends(current_admin)]


async def require_csrf(request: Request, admin: Admin) -> SignedIn:
    """Every state-changing admin request echoes its session's CSRF token (form or header)."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not admin_sessions.csrf_matches(admin.csrf_token, given):
        raise CSRFRefused()
    return admin


# Routes that change something take this one: signed in, and the form is ours.
AdminForm = Annotated[SignedIn, Depends(require_csrf)]


def admin_page(
    request: Request,
    name: str,
    admin: SignedIn | None,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """An admin page: the layout's navigation, this session's CSRF token and any notice."""
    settings = get_settings()
    notice = _read_notice(request, settings)
    response = templates.TemplateResponse(
        request,
        f"admin/{name}",
        {
            "publisher": settings.publisher_name,
            "csrf_token": admin.csrf_token if admin else "",
            "signed_in": admin is not None,
            "notice": notice,
            "path": request.url.path,
            **(context or {}),
        },
        status_code=status_code,
    )
    if notice is not None:
        response.delete_cookie(NOTICE_COOKIE, path=COOKIE_PATH)
    return response


def message_page(
    request: Request, admin: SignedIn | None, title: str, message: str, *, status_code: int
) -> HTMLResponse:
    """A page that only says something: a title and a sentence (not found, refused...)."""
    return admin_page(
        request,
        "message.html",
        admin,
        {"title": title, "message": message},
        status_code=status_code,
    )


def redirect(url: str, notice: str | None = None, *, error: bool = False) -> RedirectResponse:
    """303 to another admin page, with a one-time message shown there."""
    response = RedirectResponse(url, status_code=303)
    if notice:
        value = _notice_serializer(get_settings()).dumps({"text": notice, "error": error})
        response.set_cookie(
            NOTICE_COOKIE, value, max_age=60, path=COOKIE_PATH, httponly=True, samesite="strict"
        )
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/admin") -> HTMLResponse:
    return _login_page(request, next=next)


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/admin",
) -> Response:
    settings = get_settings()
    # Sign-in's own CSRF: the form's token must match the cookie set with the form, so a
    # page elsewhere cannot sign a browser into a session of its choosing.
    if not admin_sessions.csrf_matches(request.cookies.get(LOGIN_COOKIE, ""), csrf_token):
        return _login_page(
            request,
            next=next,
            error="This sign-in form had expired. Please try again.",
            status_code=403,
        )
    client = request.client.host if request.client else "?"
    try:
        signed_in = await run_in_threadpool(_sign_in, token, client, settings)
    except admin_sessions.LockedOut as exc:
        locked = _login_page(
            request,
            next=next,
            error="There were too many sign-in attempts from here. "
            f"Please try again in {_minutes(exc.retry_after)}.",
            status_code=429,
        )
        locked.headers["Retry-After"] = str(exc.retry_after)
        return locked
    except admin_sessions.WrongToken as exc:
        # Slowed, without holding a thread: guessing tokens costs time, not our workers.
        await asyncio.sleep(signin_delay(settings.admin_signin_delay_seconds, exc.attempt))
        return _login_page(
            request, next=next, error="That is not the admin token.", status_code=401
        )
    response = redirect(_local(next))
    response.set_cookie(
        SESSION_COOKIE,
        _cookie_serializer(settings).dumps(signed_in.session_id),
        max_age=int(settings.admin_session_hours * 3600),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=settings.base_url.startswith("https://"),
    )
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
def logout(request: Request, admin: AdminForm, session: SessionDep) -> Response:
    admin_sessions.sign_out(session, admin.session_id)
    response = redirect("/admin/login", "You are signed out.")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def _sign_in(token: str, client: str, settings: Settings) -> SignedIn:
    with db.session_scope() as session:
        try:
            return admin_sessions.sign_in(
                session,
                given_token=token,
                admin_token=settings.admin_token,
                lifetime=timedelta(hours=settings.admin_session_hours),
                client=client,
                limit=admin_sessions.SignInLimit(
                    settings.admin_signin_attempts,
                    timedelta(seconds=settings.admin_signin_window_seconds),
                ),
            )
        except (admin_sessions.WrongToken, admin_sessions.LockedOut):
            # Committed: a wrong or refused attempt stays counted.
            session.commit()
            raise


def signin_delay(base: float, attempt: int) -> float:
    """The pause before answering a wrong token: doubled with each attempt of the client's
    window, up to a minute."""
    return float(min(base * 2.0 ** (max(attempt, 1) - 1), MAX_SIGNIN_DELAY_SECONDS))


def _minutes(seconds: int) -> str:
    minutes = -(-seconds // 60)
    return "a minute" if minutes <= 1 else f"{minutes} minutes"


def _login_page(
    request: Request, *, next: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    form_token = secrets.token_urlsafe(24)
    response = admin_page(
        request,
        "login.html",
        None,
        {"login_csrf": form_token, "next": _local(next), "error": error},
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE, form_token, max_age=3600, path=COOKIE_PATH, httponly=True, samesite="strict"
    )
    return response


def _local(url: str) -> str:
    """Only a path of this dashboard: a sign-in never sends anyone to another site."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin") or "\\" in url:
        return "/admin"
    return url


def _read_notice(request: Request, settings: Settings) -> dict[str, Any] | None:
    raw = request.cookies.get(NOTICE_COOKIE)
    if not raw:
        return None
    try:
        notice = _notice_serializer(settings).loads(raw, max_age=120)
    except BadSignature:
        return None
    return notice if isinstance(notice, dict) else None


def _cookie_serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key, salt="admin-session")


def _notice_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt="admin-notice")
