"""Monitoring routes: Prometheus metrics for the scraper, readiness for the load balancer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from newsletter.app.admin_sessions import admin_token_matches
from newsletter.core.config import Settings, get_settings
from newsletter.ops import gauges, monitoring
from newsletter.web.deps import SessionDep, wants_json

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(
    request: Request,
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Prometheus text: the admin token as Bearer, or a scraper on an allowed host."""
    settings = get_settings()
    if not _may_scrape(request, authorization, settings):
        # For a scraper, not a browser: plain text (or JSON when asked), never a page.
        words = (
            "Metrics need the admin token ('Authorization: Bearer <token>') "
            "or a host listed in NEWSLETTER_METRICS_ALLOW_HOSTS."
        )
        challenge = {"WWW-Authenticate": "Bearer"}
        if wants_json(request):
            return JSONResponse({"detail": words}, status_code=401, headers=challenge)
        return PlainTextResponse(words + "\n", status_code=401, headers=challenge)
    body, content_type = gauges.render_metrics(session, settings)
    return Response(body, media_type=content_type)


# Out of the OpenAPI schema like /metrics: operators' plumbing, and its 503 is an answer.
@router.get("/readyz", include_in_schema=False)
def readyz(request: Request, authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Ready to send: database, broker, SMTP relay and at least one worker answer.

    Anyone may ask; only the admin token (or an allowed host) sees the details — relay
    address, worker names, error messages — that say more about the deployment.
    """
    settings = get_settings()
    checks = monitoring.recent_readiness(settings)
    ready = all(check["ok"] for check in checks.values())
    if not _may_scrape(request, authorization, settings):
        checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


def _may_scrape(request: Request, authorization: str | None, settings: Settings) -> bool:
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and admin_token_matches(given, settings.admin_token):
        return True
    allowed: list[str] = list(getattr(settings, "metrics_allow_hosts", []) or [])
    return request.client is not None and request.client.host in allowed
