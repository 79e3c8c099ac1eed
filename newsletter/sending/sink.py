"""The built-in SMTP sink: accepts every message on loopback and keeps it under var/outbox/."""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("newsletter.sink")


class OutboxHandler:
    """Writes each message as an .eml file, with the envelope in Return-Path / X-Original-To."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        outbox.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: bytes = envelope.original_content or b""
        head = f"Return-Path: <{envelope.mail_from}>\r\n" + "".join(
            f"X-Original-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos
        )
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}.eml"
        # Write then rename, so that a reader of the outbox never sees half a message.
        partial = self.outbox / f".{name}.part"
        partial.write_bytes(head.encode() + content)
        os.replace(partial, self.outbox / name)
        log.info("kept message for %d recipient(s) as %s", len(envelope.rcpt_tos), name)
        return "250 Message accepted for delivery"


def start_sink(outbox: Path, *, host: str, port: int) -> Any:
    """Start the sink in a background thread; the returned controller's stop() ends it."""
    controller = Controller(OutboxHandler(outbox), hostname=host, port=port, enable_SMTPUTF8=True)
    controller.start()
    return controller


def run_sink(outbox: Path, *, host: str, port: int) -> None:
    """Run the sink in the foreground until interrupted."""
    controller = start_sink(outbox, host=host, port=port)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()
