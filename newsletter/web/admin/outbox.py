"""Admin dashboard: the outbox, every message the built-in SMTP sink kept under var/outbox/.

A message is named by its file name only, and only a name that matches the sink's pattern
and is in the folder's listing is ever opened: no path from a URL reaches the filesystem.
The HTML part is served on its own, sandboxed, for an <iframe>: its scripts never run and
it cannot reach the dashboard; its links open in a new tab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.core.config import get_settings
from newsletter.web.admin.auth import Admin, admin_page
from newsletter.web.admin.listing import PageNumber, paging

router = APIRouter(prefix="/admin", include_in_schema=False)

PAGE_SIZE = 50
# The sink writes 20261120T080000-0123456789ab.eml; a letter, digit, dash or underscore
# before the extension, and no dot, slash or backslash anywhere else.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,150}\.eml")
# The email's own page: no script, no plugin, no form, no way to the dashboard's origin;
# pictures from anywhere (an email's own), links open in a new tab a person chose.
PREVIEW_POLICY = (
    "sandbox allow-popups allow-popups-to-escape-sandbox "
    "allow-top-navigation-by-user-activation; default-src 'none'; "
    "img-src data: https: http:; style-src 'unsafe-inline'; font-src data: https:; "
    "frame-ancestors 'self'; form-action 'none'"
)


@dataclass(frozen=True)
class OutboxEntry:
    name: str
    date: datetime | None
    to: str
    subject: str

    @property
    def when(self) -> str:
        return self.date.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if self.date else ""


@router.get("/outbox")
def outbox_list(
    request: Request,
    admin: Admin,
    page: PageNumber = 1,
) -> HTMLResponse:
    settings = get_settings()
    names = list_names(settings.outbox_dir)
    shown = paging(total=len(names), page=page, size=PAGE_SIZE)
    return admin_page(
        request,
        "outbox.html",
        admin,
        {
            "uses_sink": settings.uses_sink,
            "outbox_dir": settings.outbox_dir,
            "messages": [
                read_entry(settings.outbox_dir, name)
                for name in names[shown.offset : shown.offset + shown.limit]
            ],
            "total": len(names),
            "page": shown.page,
            "pages": shown.pages,
        },
    )


@router.get("/outbox/{name}")
def outbox_message(request: Request, admin: Admin, name: str) -> HTMLResponse:
    outbox = get_settings().outbox_dir
    message = read_message(outbox, name)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return admin_page(
        request,
        "outbox_message.html",
        admin,
        {
            "name": name,
            "entry": _entry(name, message, outbox),
            "headers": _headers(message),
            "text": _content(text) if text is not None else None,
            "has_html": html is not None,
        },
    )


@router.get("/outbox/{name}/html")
def outbox_message_html(admin: Admin, name: str) -> Response:
    message = read_message(get_settings().outbox_dir, name)
    part = message.get_body(preferencelist=("html",))
    if part is None:
        raise HTTPException(404, "This message has no HTML part.")
    return HTMLResponse(
        # Links leave the frame for a tab of their own: the dashboard's policy keeps other
        # sites out of its frames.
        _links_in_new_tabs(_content(part)),
        headers={"Content-Security-Policy": PREVIEW_POLICY, "Referrer-Policy": "no-referrer"},
    )


def list_names(outbox: Path) -> list[str]:
    """The messages' file names, newest first (the sink's names begin with their time)."""
    try:
        files = [p for p in outbox.iterdir() if NAME_PATTERN.fullmatch(p.name) and p.is_file()]
    except FileNotFoundError:
        return []
    files.sort(key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    return [p.name for p in files]


def read_message(outbox: Path, name: str) -> EmailMessage:
    """The whole message of that name, or a 404 for any name not in the outbox's listing."""
    path = _existing(outbox, name)
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    return message


def read_entry(outbox: Path, name: str) -> OutboxEntry:
    """Date, recipients and subject of one message, from its headers alone."""
    path = _existing(outbox, name)
    with path.open("rb") as file:
        headers = BytesHeaderParser(policy=policy.default).parse(file)
    assert isinstance(headers, EmailMessage)
    return _entry(name, headers, outbox)


def _links_in_new_tabs(html: str) -> str:
    # Inside <head> when there is one: before the doctype it would put the page in quirks mode.
    base = '<base target="_blank">'
    head = _HEAD.search(html)
    if head is None:
        return base + html
    return html[: head.end()] + base + html[head.end() :]


_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)


def _existing(outbox: Path, name: str) -> Path:
    if not NAME_PATTERN.fullmatch(name):
        raise HTTPException(404, "No such message in the outbox.")
    try:
        listed = {p.name for p in outbox.iterdir()}
    except FileNotFoundError:
        listed = set()
    if name not in listed or not (outbox / name).is_file():
        raise HTTPException(404, "No such message in the outbox.")
    return outbox / name


def _entry(name: str, message: EmailMessage, outbox: Path) -> OutboxEntry:
    date: datetime | None = None
    try:
        header = message["Date"]
        date = header.datetime if header is not None else None
    except (TypeError, ValueError, AttributeError):
        date = None
    if date is None:
        try:
            date = datetime.fromtimestamp((outbox / name).stat().st_mtime, UTC)
        except OSError:
            date = None
    return OutboxEntry(
        name=name,
        date=date,
        to=_header(message, "To") or _header(message, "X-Original-To"),
        subject=_header(message, "Subject"),
    )


def _headers(message: EmailMessage) -> list[tuple[str, str]]:
    found = []
    for key, raw in message.raw_items():
        try:
            value = str(policy.default.header_factory(key, raw))
        except (TypeError, ValueError, IndexError):
            value = str(raw)
        found.append((key, value))
    return found


def _header(message: EmailMessage, key: str) -> str:
    try:
        value = message[key]
    except (TypeError, ValueError, IndexError):  # a header the parser cannot make sense of
        return ""
    return str(value) if value is not None else ""


def _content(part: MIMEPart) -> str:
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset: show the bytes as best we can
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
