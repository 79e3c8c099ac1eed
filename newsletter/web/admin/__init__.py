"""The admin dashboard at /admin: server-rendered pages for editors and operators."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from newsletter.core.config import TEMPLATES_DIR
from newsletter.web.admin import (
    articles,
    auth,
    dashboard,
    digests,
    newsletters,
    outbox,
    subscribers,
    suppressions,
)
from newsletter.web.admin.auth import CSRFRefused, SignInRequired, message_page
from newsletter.web.headers import DefaultHeaders

router = APIRouter()
for module in (auth, dashboard, digests, newsletters, articles, subscribers, suppressions, outbox):
    router.include_router(module.router)

# Inline styles are the layout's; scripts only from our own static folder; frames (the
# preview of an email) only from here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)
ADMIN_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("Referrer-Policy", "same-origin"),
    ("X-Content-Type-Options", "nosniff"),
)


def install(app: FastAPI) -> None:
    """Add the dashboard's routes, its static files, its error pages and its headers."""
    app.include_router(router)
    app.mount(
        "/admin/static",
        StaticFiles(directory=TEMPLATES_DIR / "pages" / "admin" / "static"),
        name="admin-static",
    )
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(CSRFRefused, _csrf_refused)
    # Added before the headers, so that they wrap its answers too.
    app.add_middleware(SignInBeforeBody)
    # Pages with readers' data: never cached, never framed elsewhere, no referrer out.
    app.add_middleware(DefaultHeaders, headers=ADMIN_HEADERS, only=("/admin",))


class SignInBeforeBody:
    """Posts to the dashboard from no live session are answered before their body is read.

    FastAPI reads and parses a route's form (up to 25 MB of upload) before the route's
    dependencies run, the sign-in check among them: so the check is made here first, from
    the cookie alone. Only the sign-in form itself is read from anyone, under the small
    limit of readers' forms.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in {"GET", "HEAD", "OPTIONS"}
            and (
                scope["path"] == auth.COOKIE_PATH
                or scope["path"].startswith(auth.COOKIE_PATH + "/")
            )
            and scope["path"] not in auth.OPEN_TO_ANYONE
        ):
            request = Request(scope)
            cookie = request.cookies.get(auth.SESSION_COOKIE)
            if await run_in_threadpool(auth.live_session, cookie) is None:
                # As the routes answer it: a redirect to sign in, or a 401 for scripts.
                response = await _sign_in_required(request, SignInRequired())
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    if _is_script(request):
        return JSONResponse(
            {"detail": "Sign in to the dashboard first: your session has ended."}, status_code=401
        )
    target = request.url.path if request.method == "GET" else "/admin"
    if request.url.query and request.method == "GET":
        target += f"?{request.url.query}"
    return auth.redirect(f"/admin/login?next={_quote(target)}")


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    message = (
        "This form did not come from this dashboard, or it has expired. "
        "Go back, reload the page and try again."
    )
    if _is_script(request):
        return JSONResponse({"detail": message}, status_code=403)
    return message_page(request, None, "Form refused", message, status_code=403)


def _is_script(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _quote(path: str) -> str:
    return quote(path, safe="/")
