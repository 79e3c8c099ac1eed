"""Logging set-up: one line per event, as text or as JSON objects, and address masking."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from newsletter.core.config import Settings

# Ids that a call may pass with `extra={...}` and that a log search wants as fields.
EXTRA_IDS = ("digest_id", "delivery_id", "subscriber_id", "newsletter_id", "task_id")

_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def configure_logging(
    settings: Settings,
    *,
    level: int | str = logging.INFO,
    routine_tasks: frozenset[str] = frozenset(),
) -> None:
    """Send every record to stderr, one line each: JSON when NEWSLETTER_LOG_FORMAT=json.

    The routine tasks (the beat's, every few seconds) are logged at DEBUG unless they did
    something. Calling it again replaces the handler it installed.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JSONFormatter() if settings.log_format == "json" else TextFormatter())
    if routine_tasks:
        handler.addFilter(QuietRoutine(routine_tasks))
    # aiosmtpd logs every SMTP command at INFO (addresses, VERP tokens): only its warnings.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # A line per HTTP request made (feeds, SNS certificates) is noise, not an event.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedaction) for f in access.filters):
        access.addFilter(AccessLogRedaction())


# Celery's lines about one task: the beat sending it, the worker receiving it, its end.
_TASK_LINE = re.compile(
    r"^(?:Scheduler: Sending due task \S+ \((?P<due>[\w.]+)\)"
    r"|Task (?P<task>[\w.]+)\[[^\]]*\] (?:received|succeeded in [\d.e-]+s: (?P<result>.*)))$",
    re.DOTALL,
)
# What a routine task returns when it found nothing to do.
_NOTHING = {"[]", "0", "None", "''", "{}", "()"}


class QuietRoutine(logging.Filter):
    """The beat's routine tasks (a tick every 10 s...) at DEBUG unless they did something:
    sent, received and succeeded with nothing to show are not events for the log."""

    def __init__(self, tasks: frozenset[str]) -> None:
        super().__init__()
        self.tasks = tasks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith("celery"):
            return True
        found = _TASK_LINE.match(record.getMessage())
        if not found or (found["due"] or found["task"]) not in self.tasks:
            return True
        result = found["result"]
        if result is not None and result.strip() not in _NOTHING:
            return True  # it did something: that is worth a line
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


# The path segment after one of these is a reader's signed token: whoever reads the log
# could use it. Found anywhere in the path, so that a root path (/news/unsubscribe/…) or
# a proxy's prefix does not hide it.
_TOKEN_SEGMENT = re.compile(r"(/(?:confirm|unsubscribe|preferences|bounces)/)[^/]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def redact_path(path: str) -> str:
    """A request path fit for a log: no query string (it may hold an address a dashboard
    user searched for), no reader's token, and any address in it masked."""
    bare, question, _ = path.partition("?")
    # Unquoted to find what is in it (an address in a path arrives as ana%40…), with
    # control characters quoted again so that a crafted path cannot forge a log line.
    bare = _CONTROL.sub(lambda c: f"%{ord(c.group()):02X}", unquote(bare))
    bare = _TOKEN_SEGMENT.sub(r"\1…", bare)
    masked = "/".join(mask_addresses(segment) for segment in bare.split("/"))
    return masked + ("?…" if question else "")


class AccessLogRedaction(logging.Filter):
    """uvicorn's access line ("client - 'METHOD path HTTP/v' status") with its path redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def mask_address(email: str) -> str:
    """An address as an operator may see it: `le…@example.com`, never the whole local part."""
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return f"{domain[:2]}…" if domain else "…"
    keep = 2 if len(local) > 3 else 1
    return f"{local[:keep]}…@{domain}"


def mask_addresses(text: str) -> str:
    """Text (an SMTP reply, an error) with every address in it masked."""
    return _ADDRESS.sub(lambda match: mask_address(match.group(0)), text)


class JSONFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, the ids passed as extra."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_IDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger: message [digest_id=… delivery_id=…]` for a person at a terminal.

    One event is one line: control characters in the message (an address, a header or a
    path an outsider chose) are written as escapes, so that a CR or LF cannot start a line
    that looks like another event. A traceback follows on lines of its own, each indented,
    so that no line of it can pass for the start of an event either.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        first, _newline, rest = super().format(record).partition("\n")
        ids = [
            f"{name}={escape_controls(str(getattr(record, name)))}"
            for name in EXTRA_IDS
            if getattr(record, name, None) is not None
        ]
        if ids:
            first = f"{first} [{' '.join(ids)}]"
        if not rest:
            return first
        details = (f"    {escape_controls(line)}" for line in rest.split("\n"))
        return "\n".join([first, *details])


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators some viewers break on.
_LINE_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """Text on one line: CR, LF and every other control character written as an escape."""
    return _LINE_BREAKERS.sub(lambda c: _NAMED_ESCAPES.get(c.group()) or _escape(c.group()), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_HANDLER_NAME = "newsletter"
