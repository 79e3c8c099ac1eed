"""Headers a group of pages always carries, unless a response set its own."""

from __future__ import annotations

from collections.abc import Sequence

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
