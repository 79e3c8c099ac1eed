"""The inbound SMTP receiver: bounces and mailed unsubscribes for our VERP addresses only."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.bounces.policy import accepts_recipient
from newsletter.core.config import Settings
from newsletter.core.logs import mask_address, mask_addresses

log = logging.getLogger("newsletter.inbound")

# A DSN or an ARF report is a few kilobytes, with at most the returned message's headers or
# a short body: a megabyte is plenty, and keeps a flood of big messages off the queue.
MAX_INBOUND_BYTES = 1024 * 1024
# A bounce goes to one VERP address; a transaction naming dozens is no bounce.
MAX_RECIPIENTS = 50
# Messages one client address may hand in per minute (a busy MX sends far fewer bounces).
MAX_MESSAGES_PER_CLIENT_MINUTE = 120

# Handed a message's bytes (base64, for the JSON task queue) and its envelope recipients.
Hand = Callable[[str, list[str]], None]


class BounceHandler:
    """Accepts mail for bounces+<token>@ and unsubscribe+<token>@ our domain, refuses the rest.

    Refusing every other recipient at RCPT time makes it no open relay; each accepted
    message goes to a Celery task, so a slow database never holds the SMTP session.
    """

    def __init__(
        self,
        settings: Settings,
        hand: Hand,
        *,
        per_client_minute: int = MAX_MESSAGES_PER_CLIENT_MINUTE,
    ) -> None:
        self.settings = settings
        self.hand = hand
        self.per_client_minute = per_client_minute
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        if not accepts_recipient(address, self.settings):
            log.info("refused recipient %s", mask_address(address))
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: bytes = envelope.original_content or b""
        if len(content) > MAX_INBOUND_BYTES:
            return "552 5.3.4 Message too big"
        client = str(session.peer[0]) if isinstance(session.peer, tuple) else str(session.peer)
        if not self._take_one(client):
            log.warning(
                "client %s sends more than %s messages a minute", client, self.per_client_minute
            )
            return "451 4.7.1 Too many messages from you; try again later"
        try:
            self.hand(base64.b64encode(content).decode("ascii"), list(envelope.rcpt_tos))
        except Exception:  # the queue is down: the sender keeps the message and retries
            log.exception("could not queue an inbound message")
            return "451 4.3.0 Try again later"
        return "250 OK: queued"

    def _take_one(self, client: str) -> bool:
        """Whether this client may hand in one more message in the current minute."""
        now = time.monotonic()
        with self._lock:
            for other in [c for c, times in self._recent.items() if times[-1] < now - 60]:
                del self._recent[other]
            times = self._recent.setdefault(client, deque())
            while times and times[0] < now - 60:
                times.popleft()
            if len(times) >= self.per_client_minute:
                return False
            times.append(now)
            return True


class _MaskedAddresses(logging.Filter):
    """aiosmtpd logs each command at INFO: RCPT TO carries unsubscribe+ tokens, addresses."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_addresses(record.getMessage())
        record.args = None
        return True


def start_receiver(settings: Settings, hand: Hand, *, host: str, port: int, **limits: int) -> Any:
    smtp_log = logging.getLogger("mail.log")
    if not any(isinstance(f, _MaskedAddresses) for f in smtp_log.filters):
        smtp_log.addFilter(_MaskedAddresses())
    controller = Controller(
        BounceHandler(settings, hand, **limits),
        hostname=host,
        port=port,
        data_size_limit=MAX_INBOUND_BYTES,
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
