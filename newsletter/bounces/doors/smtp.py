"""The inbound SMTP receiver: bounces and mailed unsubscribes for our VERP addresses only."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.bounces.parsing import MAX_MESSAGE_BYTES
from newsletter.bounces.policy import accepts_recipient
from newsletter.core.config import Settings

log = logging.getLogger("newsletter.inbound")

# Handed a message's bytes (base64, for the JSON task queue) and its envelope recipients.
Hand = Callable[[str, list[str]], None]


class BounceHandler:
    """Accepts mail for bounces+<token>@ and unsubscribe+<token>@ our domain, refuses the rest.

    Refusing every other recipient at RCPT time makes it no open relay; each accepted
    message goes to a Celery task, so a slow database never holds the SMTP session.
    """

    def __init__(self, settings: Settings, hand: Hand) -> None:
        self.settings = settings
        self.hand = hand

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if not accepts_recipient(address, self.settings):
            log.info("refused recipient %s", _masked(address))
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: bytes = envelope.original_content or b""
        # No more than the parser reads: a larger message would only fail later.
        if len(content) > MAX_MESSAGE_BYTES:
            return "552 5.3.4 Message too big"
        try:
            self.hand(base64.b64encode(content).decode("ascii"), list(envelope.rcpt_tos))
        except Exception:  # the queue is down: the sender keeps the message and retries
            log.exception("could not queue an inbound message")
            return "451 4.3.0 Try again later"
        return "250 OK: queued"


def start_receiver(settings: Settings, hand: Hand, *, host: str, port: int) -> Any:
    controller = Controller(
        BounceHandler(settings, hand),
        hostname=host,
        port=port,
        data_size_limit=MAX_MESSAGE_BYTES,
        enable_SMTPUTF8=True,
    )
    controller.start()
    return controller


def run_receiver(settings: Settings, hand: Hand, *, host: str, port: int) -> None:
    controller = start_receiver(settings, hand, host=host, port=port)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def _masked(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local[:2]}…@{domain}" if local else address
