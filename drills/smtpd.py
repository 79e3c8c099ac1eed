"""The drills' SMTP server: aiosmtpd with faults on demand, logging every message it accepts.

    python -m drills.smtpd --port P --log FILE [--config JSON] [--control FILE]

Every accepted message, refused recipient and dropped connection is one JSON line in
the log (time, envelope sender, recipient, Message-ID), written before the reply, so the
drill can count accepted messages per delivery (the VERP sender names it). Faults, from
the JSON config:

- `tempfail_share` / `tempfail_times`: that share of recipients (fixed by a hash of the
  address) is answered 451 — or 421 and the connection closed, one in two — on its first
  `tempfail_times` attempts, then accepted (greylisting, a throttling relay);
- `drop_share`: that share of messages has its connection dropped at the end of DATA,
  with no reply, and is not kept;
- `reject`: addresses always answered 550 at RCPT;
- `delay`: seconds to wait before accepting each message.

The control file (JSON, read every 0.1 s) holds `{"hang": true}` while the server must
hang: new connections get no greeting and MAIL FROM no answer, until it says false.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

MESSAGE_ID = re.compile(rb"^message-id:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class Faults:
    """What the server does wrong, and the log of what it did."""

    def __init__(self, config: dict[str, Any], log: Path, control: Path | None) -> None:
        self.tempfail_share = float(config.get("tempfail_share", 0))
        self.tempfail_times = int(config.get("tempfail_times", 1))
        self.drop_share = float(config.get("drop_share", 0))
        self.reject = {address.lower() for address in config.get("reject", [])}
        self.delay = float(config.get("delay", 0))
        self.hang = False
        self.control = control
        self.attempts: dict[str, int] = {}
        self.random = random.Random(config.get("seed", 7))
        self._log = log.open("a", buffering=1)
        self._lock = threading.Lock()

    def record(self, kind: str, **fields: Any) -> None:
        with self._lock:
            self._log.write(json.dumps({"t": time.time(), "kind": kind, **fields}) + "\n")

    def tempfails(self, address: str) -> bool:
        digest = hashlib.sha256(address.encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < self.tempfail_share

    async def wait_while_hanging(self) -> None:
        while self.hang:
            await asyncio.sleep(0.05)

    async def watch_control(self) -> None:
        while self.control is not None:
            with contextlib.suppress(OSError, ValueError):
                self.hang = bool(json.loads(self.control.read_text() or "{}").get("hang"))
            await asyncio.sleep(0.1)


class Handler:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await self.faults.wait_while_hanging()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        faults = self.faults
        key = address.lower()
        if key in faults.reject:
            faults.record("refused", sender=envelope.mail_from, to=key, code=550)
            return "550 5.1.1 No such user here"
        if faults.tempfail_share and faults.tempfails(key):
            attempt = faults.attempts.get(key, 0)
            faults.attempts[key] = attempt + 1
            if attempt < faults.tempfail_times:
                code = 421 if faults.random.random() < 0.5 else 451
                faults.record("refused", sender=envelope.mail_from, to=key, code=code)
                if code == 421:
                    # 421 closes the session (RFC 5321 3.8): answered, then hung up.
                    server.loop.call_later(0.01, server.transport.close)
                    return "421 4.7.0 Too many messages, closing connection"
                return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        faults = self.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        found = MESSAGE_ID.search(envelope.original_content or b"")
        message_id = found.group(1).decode() if found else None
        if faults.drop_share and faults.random.random() < faults.drop_share:
            faults.record("dropped", sender=envelope.mail_from, message_id=message_id)
            server.transport.abort()
            return "421 4.4.2 (never heard: the connection is gone)"
        for recipient in envelope.rcpt_tos:
            faults.record(
                "accepted",
                sender=envelope.mail_from,
                to=recipient.lower(),
                message_id=message_id,
            )
        return "250 OK"


class HangingSMTP(SMTP):  # type: ignore[misc]
    """While the server hangs, a new connection gets no greeting."""

    faults: Faults

    async def push(self, status: Any) -> None:
        text = status.decode() if isinstance(status, bytes) else status
        if text.startswith("220 "):
            await self.faults.wait_while_hanging()
        await super().push(status)


class FaultyController(Controller):  # type: ignore[misc]
    def __init__(self, faults: Faults, **kwargs: Any) -> None:
        super().__init__(Handler(faults), **kwargs)
        self.faults = faults

    def factory(self) -> SMTP:
        server = HangingSMTP(self.handler, **self.SMTP_kwargs)
        server.faults = self.faults
        return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--config", default="{}")
    parser.add_argument("--control", type=Path)
    args = parser.parse_args(argv)
    faults = Faults(json.loads(args.config), args.log, args.control)
    controller = FaultyController(
        faults, hostname="127.0.0.1", port=args.port, enable_SMTPUTF8=True, ready_timeout=10
    )
    controller.start()
    asyncio.run_coroutine_threadsafe(faults.watch_control(), controller.loop)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
