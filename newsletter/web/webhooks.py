"""Email providers' webhooks: bounces and complaints from SES, Mailgun, Postmark and SendGrid."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from newsletter.bounces import policy as bounces
from newsletter.bounces.doors import webhooks
from newsletter.bounces.doors.webhooks import ProviderEvent, WebhookRefused
from newsletter.core.config import Settings
from newsletter.web.deps import SessionDep, SettingsDep, refusals

log = logging.getLogger("newsletter.webhooks")

router = APIRouter(
    prefix="/webhooks", tags=["webhooks"], responses=refusals(400, 401, 403, 413, 503)
)


async def _raw_body(request: Request) -> bytes:
    # Read here, as sent: signatures cover the exact bytes, and a JSON parse by FastAPI
    # would answer malformed bodies with its own 422.
    return await request.body()


RawBody = Annotated[bytes, Depends(_raw_body)]


@router.post("/ses")
def ses(body: RawBody, session: SessionDep, settings: SettingsDep) -> JSONResponse:
    """Amazon SES notifications through SNS (and the topic's subscription confirmation)."""
    return _take("ses", lambda: webhooks.ses_events(body, settings=settings), session, settings)


@router.post("/mailgun")
def mailgun(body: RawBody, session: SessionDep, settings: SettingsDep) -> JSONResponse:
    """Mailgun's failed and complained events."""

    def claim(token: str, signed_at: int) -> bool:
        taken = bounces.claim_webhook_token(
            session,
            provider="mailgun",
            token=token,
            max_age=timedelta(seconds=webhooks.MAILGUN_MAX_AGE_SECONDS),
        )
        # Committed at once: a request refused later (a bad event-data) still used it up.
        session.commit()
        return taken

    return _take(
        "mailgun",
        lambda: webhooks.mailgun_events(body, settings=settings, claim=claim),
        session,
        settings,
    )


@router.post("/postmark")
def postmark(
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Postmark's bounce and spam complaint webhooks."""
    return _take(
        "postmark",
        lambda: webhooks.postmark_events(body, authorization=authorization, settings=settings),
        session,
        settings,
    )


@router.post("/sendgrid")
def sendgrid(
    body: RawBody,
    session: SessionDep,
    settings: SettingsDep,
    signature: Annotated[str | None, Header(alias="X-Twilio-Email-Event-Webhook-Signature")] = None,
    timestamp: Annotated[str | None, Header(alias="X-Twilio-Email-Event-Webhook-Timestamp")] = None,
) -> JSONResponse:
    """SendGrid's Event Webhook (bounce, dropped, spamreport), signed."""
    return _take(
        "sendgrid",
        lambda: webhooks.sendgrid_events(
            body, signature=signature, timestamp=timestamp, settings=settings
        ),
        session,
        settings,
    )


def _take(
    provider: str,
    read_events: Callable[[], list[ProviderEvent]],
    session: Session,
    settings: Settings,
) -> JSONResponse:
    """One provider's request: refused as its door says why, or its events recorded."""
    try:
        events = read_events()
    except WebhookRefused as refused:
        log.warning("%s webhook refused (%s): %s", provider, refused.status_code, refused.message)
        return JSONResponse({"detail": refused.message}, status_code=refused.status_code)
    return _record(session, settings, events)


def _record(session: Session, settings: Settings, events: list[ProviderEvent]) -> JSONResponse:
    recorded = duplicates = 0
    for event in events:
        outcome = bounces.record_provider_event(
            session,
            provider=event.provider,
            event_id=event.event_id,
            kind=event.kind,
            settings=settings,
            email=event.email,
            message_id=event.message_id,
            status=event.status,
            diagnostic=event.diagnostic,
            raw=event.raw,
        )
        if outcome.action == "duplicate":
            duplicates += 1
        else:
            recorded += 1
    session.commit()
    return JSONResponse({"recorded": recorded, "duplicates": duplicates})
