"""Sending one message on its own (a confirmation, a welcome, a goodbye), outside any batch.

The relay and the retry policy are the batches' own (newsletter.sending.relays); what
this adds is the verdict on one message: sent, refused for good, or to try again later
(and when), or given up once its attempts are spent.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.core.config import Settings
from newsletter.core.logs import mask_addresses
from newsletter.email.render import OutgoingMessage
from newsletter.sending.relays import RetryPolicy, relay_for_notice
from newsletter.sending.transport import DeliveryError, SMTPTransport

log = logging.getLogger("newsletter.sending")


class SingleStatus(enum.StrEnum):
    SENT = "sent"
    REFUSED = "refused"  # a 5xx: trying again cannot help
    RETRY = "retry"  # a 4xx or a relay out of reach: try again after `retry_in`
    FAILED = "failed"  # put off on every attempt the retry policy allows


@dataclass(frozen=True)
class SingleOutcome:
    status: SingleStatus
    relay: str
    error: DeliveryError | None = None
    retry_in: float | None = None


def send_single(
    message: OutgoingMessage,
    *,
    settings: Settings,
    subscriber_id: int,
    attempt: int,
    what: str,
    transport: Callable[[str], SMTPTransport] | None = None,
) -> SingleOutcome:
    """Send one message over its own SMTP session and say what came of it.

    `attempt` counts the earlier tries (0 the first time); `what` names the message in
    the log (the task's name).
    """
    relay = relay_for_notice(settings, subscriber_id=subscriber_id, attempt=attempt)
    make_transport = transport or (
        lambda url: SMTPTransport(url, timeout=settings.smtp_timeout_seconds)
    )
    extra = {"subscriber_id": subscriber_id}
    try:
        with make_transport(relay) as smtp:
            smtp.send(
                envelope_from=message.envelope_from,
                recipient=message.recipient,
                data=message.data,
                wire_ready=message.wire_ready,
            )
    except DeliveryError as exc:
        reply = mask_addresses(str(exc))
        if exc.permanent:
            log.warning("%s to subscriber %s refused: %s", what, subscriber_id, reply, extra=extra)
            return SingleOutcome(SingleStatus.REFUSED, relay, exc)
        policy = RetryPolicy.from_settings(settings)
        if not policy.may_retry(attempts=attempt + 1):
            log.warning(
                "%s to subscriber %s failed %d times, given up: %s",
                what,
                subscriber_id,
                attempt + 1,
                reply,
                extra=extra,
            )
            return SingleOutcome(SingleStatus.FAILED, relay, exc)
        retry_in = policy.delay(retries=attempt)
        log.warning(
            "%s to subscriber %s failed, retrying in %.1fs: %s",
            what,
            subscriber_id,
            retry_in,
            reply,
            extra=extra,
        )
        return SingleOutcome(SingleStatus.RETRY, relay, exc, retry_in)
    log.info("%s sent to subscriber %s as %s", what, subscriber_id, message.message_id, extra=extra)
    return SingleOutcome(SingleStatus.SENT, relay)
