"""Plain ASGI middlewares over every response: the headers a group of pages always carries,
and HEAD answered wherever GET is."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class DefaultHeaders:
    """Add `headers` to the responses of the paths under `only` (every path, if none),
    except those under `skip`; a header the response has already is left as it is.

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a task and two streams
    per request, which every request paid (the counted links' redirect among them).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        headers: Sequence[tuple[str, str]],
        only: tuple[str, ...] = (),
        skip: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.headers = [(name.lower().encode(), value.encode()) for name, value in headers]
        self.only = only
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or (self.only and not path.startswith(self.only))
            or (self.skip and path.startswith(self.skip))
        ):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = list(message.get("headers", []))
                given = {name.lower() for name, _ in present}
                missing = [(n, v) for n, v in self.headers if n not in given]
                if missing:
                    message = {**message, "headers": present + missing}
            await send(message)

        await self.app(scope, receive, with_headers)


# In the scope of a HEAD request answered by a GET route: a route that acts on a GET (a
# confirmation, a counted open) asks is_head() and does not act for a HEAD.
HEAD_ASKED = "newsletter.head"


def is_head(request: Request) -> bool:
    """Whether the request is a HEAD, even one HeadLikeGet hands to a GET route."""
    return request.method == "HEAD" or bool(request.scope.get(HEAD_ASKED))


class HeadLikeGet:
    """HEAD answered wherever GET is: the same status and headers, no body.

    Link scanners, uptime checks and mail clients' previews ask HEAD first; FastAPI's GET
    routes alone answer them 405. A route that answers HEAD itself (the counted story
    link, where a HEAD is a machine's) keeps it; a GET route that acts asks is_head().
    """

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the app's own list: routes added later are seen too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or self._answered(scope):
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET", HEAD_ASKED: True}, receive, without_body)

    def _answered(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in self.routes)
