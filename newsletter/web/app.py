"""The FastAPI application: routes, human-readable errors, and a cap on request size."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.app import queue as jobs_queue
from newsletter.app.unit_of_work import Queue
from newsletter.core.config import get_settings
from newsletter.core.i18n import N_
from newsletter.core.tokens import TokenError
from newsletter.core.validation import InvalidInput
from newsletter.subscribers.store import UnknownSubscriber
from newsletter.web import (
    admin,
    archive,
    articles_api,
    digests_api,
    health,
    links,
    monitoring,
    reader,
    site,
    webhooks,
)
from newsletter.web.deps import page, wants_json
from newsletter.web.headers import DefaultHeaders, HeadLikeGet

log = logging.getLogger("newsletter.web")
# The dashboard's own caps (20 MB a CSV, 2 MB an article file) apply below this.
ADMIN_UPLOAD_BYTES = 25 * 1024 * 1024
FASTAPI_UNREADABLE_BODY = "There was an error parsing the body"
UNREADABLE_BODY = N_(
    "The request body cannot be read: it is not well-formed JSON or form data, "
    "or it is nested too deeply."
)
# The titles of the error pages, by status.
ERROR_TITLES = {
    400: N_("Link not valid"),
    404: N_("Not found"),
    405: N_("Not allowed"),
    413: N_("Too large"),
}
# What a refusal says when the route gave no words of its own.
STATUS_DETAILS = {
    404: N_("There is nothing here."),
    405: N_("This address does not take this kind of request."),
}


def create_app(*, queue: Queue | None = None) -> FastAPI:
    """The web app; its jobs go to the Celery broker of the settings, or to `queue`."""
    settings = get_settings()
    # Configured here, not at import: the broker, and the folder /metrics reads.
    celery = jobs_queue.configure(settings)
    docs = settings.api_docs_enabled
    app = FastAPI(
        title=f"{settings.publisher_name} newsletter",
        version="0.1.0",
        # The spec maps every door: served in production only when the operator asks.
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.queue = queue if queue is not None else jobs_queue.CeleryQueue(celery)
    app.router.add_event_handler("startup", lambda: limit_threads(settings.database_pool_size))
    links.install(app, settings)
    app.include_router(reader.router)
    app.include_router(archive.router)
    app.include_router(health.router)
    app.include_router(monitoring.router)
    app.include_router(articles_api.router)
    app.include_router(digests_api.router)
    app.include_router(webhooks.router)
    app.include_router(site.router)
    admin.install(app)
    app.add_middleware(DefaultHeaders, headers=READER_HEADERS, skip=NOT_READERS)
    app.add_middleware(HeadLikeGet, routes=app.router.routes)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        # Editors post whole articles; readers' forms are small.
        larger={
            "/api/": settings.max_api_request_bytes,
            # SendGrid posts batches of events of up to 768 KB.
            "/webhooks/": settings.max_api_request_bytes,
            # Editors upload subscriber CSVs and article files from the dashboard; the
            # sign-in form is small, and anyone may post it.
            "/admin/": ADMIN_UPLOAD_BYTES,
            "/admin/login": settings.max_request_bytes,
        },
    )
    # Outermost: a Host header not ours is refused before anything else reads the request
    # (the Host is what redirects and absolute links are built from).
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=settings.allowed_host_list, www_redirect=False
    )
    app.add_exception_handler(TokenError, _token_error)
    app.add_exception_handler(UnknownSubscriber, _not_found)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


# Readers' pages (signup, preferences, articles, digests' web copies) run one script only,
# named by its hash (the signup form's time zone, reader.ZONE_SCRIPT), and are framed
# nowhere; a digest's copy may show pictures from the articles' sites.
READER_CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {reader.ZONE_SCRIPT_SOURCE}; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# The readers' pages' headers, where a response has not set its own. The dashboard sets
# its own (admin.install); the API and webhooks answer JSON; the API docs (development)
# load their scripts from a CDN.
READER_HEADERS = (
    ("Content-Security-Policy", READER_CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    # Links in readers' pages carry tokens: the address never leaves in a Referer.
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
)
NOT_READERS = ("/admin", "/api/", "/webhooks/", "/docs", "/redoc")


def limit_threads(connections: int) -> None:
    """Blocking work (sync routes and dependencies, run_in_threadpool) on half as many
    threads as the database pool keeps connections.

    AnyIO's default is 40 threads; beyond the pool's connections, each request in a
    thread of its own opened a connection and closed it again (under 16 concurrent
    signups, a fifth of the web process's time). Half: a request's session is closed
    after its route, on a thread of its own (FastAPI runs a dependency's exit outside the
    limit, once the response is sent), and keeps its connection until then, while the
    next request has the thread. Requests above the limit wait their turn without holding
    the event loop (one that already holds a connection keeps it while it waits).
    """
    anyio.to_thread.current_default_thread_limiter().total_tokens = max(1, connections // 2)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec, with the 422 body our handlers really send: one sentence, not a list."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schemas = spec.get("components", {}).get("schemas", {})
        if "HTTPValidationError" in schemas:
            schemas["HTTPValidationError"] = {
                "title": "HTTPValidationError",
                "type": "object",
                "properties": {
                    "detail": {"type": "string", "title": "Detail"},
                    "field": {"type": ["string", "null"], "title": "Field"},
                },
                "required": ["detail"],
            }
            schemas.pop("ValidationError", None)
        app.openapi_schema = spec
    return app.openapi_schema


async def _token_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TokenError)
    message = (
        N_("This link has expired. Sign up again to receive a fresh one.")
        if exc.expired
        else N_("This link is not valid. Please use the link exactly as it appears in the email.")
    )
    return _problem(request, 400, ERROR_TITLES[400], message)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _problem(request, 404, ERROR_TITLES[404], N_("There is nothing here."))


async def _invalid_input(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInput)
    return _problem(request, 422, N_("Please check what you entered"), exc.message, field=exc.field)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(
            str(part) for part in error.get("loc", ()) if part not in {"body", "query"}
        )
        problems.append(
            f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "")
        )
    # Pydantic's own words for each problem are English; the page around them is not.
    return _problem(
        request, 422, N_("Please check what you sent"), "; ".join(problems) or N_("Invalid input.")
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else N_("The request cannot be served.")
    if detail == HTTPStatus(exc.status_code).phrase:
        # Starlette's bare "Not Found" (no such route): words a person understands.
        detail = STATUS_DETAILS.get(exc.status_code, detail)
    elif detail == FASTAPI_UNREADABLE_BODY:
        # FastAPI's words for any body it could not parse, JSON nested too deep among them.
        detail = UNREADABLE_BODY
    title = ERROR_TITLES.get(exc.status_code) or N_("Error")
    response = _problem(request, exc.status_code, title, detail)
    for header, value in (exc.headers or {}).items():
        response.headers[header] = value
    return response


def _problem(request: Request, status: int, title: str, message: str, **extra: Any) -> Response:
    """JSON (in English: it is for programs) or a page in the visitor's language; `title`
    and `message` are written in it when they are Phrases (N_)."""
    if wants_json(request) or request.url.path.startswith("/api/"):
        return JSONResponse({"detail": str(message), **extra}, status_code=status)
    return page(request, "message.html", {"title": title, "message": message}, status_code=status)


class BodySizeLimit:
    """Refuse request bodies over max_bytes with 413 before the route reads them.

    A declared Content-Length is checked before the route runs. A chunked body has none:
    its size is counted as it arrives, and once past the limit the route is stopped, and
    whatever it would have answered (a form parser's 400, an unhandled error's 500) is
    replaced by the 413.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, larger: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The longest matching prefix wins: /admin/login takes less than the rest of /admin.
        limit = next(
            (
                size
                for prefix, size in sorted(self.larger.items(), key=lambda item: -len(item[0]))
                if scope["path"].startswith(prefix)
            ),
            self.max_bytes,
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send)
            return
        received = 0
        too_large = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _TooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the route's own answer to a body it could not finish reading
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # Whatever the route made of the interrupted read (FastAPI wraps it, a
            # middleware's task group groups it), the cause is the size.
            if not too_large:
                raise
        if too_large and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = b'{"detail":"The request is too large."}'
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    """A chunked body grew past its route's limit while being read."""
