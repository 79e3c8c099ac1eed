"""Email rendering: Jinja templates under templates/email/, CSS inlining, MIME building.

Rendering, CSS inlining and MIME structure are done once per message template (a digest
variant, say); each recipient then costs a few string joins, two C-speed quoted-printable
encodings and a handful of headers (`MessageTemplate.fill`). `build_reference_message`
is the plain route through the email package, kept as the yardstick the fast route is
tested and measured against.
"""

from __future__ import annotations

import binascii
import email.policy
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from typing import Any

import css_inline
import idna
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import escape

from newsletter.core.clock import utcnow
from newsletter.core.config import TEMPLATES_DIR
from newsletter.core.i18n import LANGUAGE_TAGS, duration, long_date, translations

# CRLF line ends and RFC-conformant folding: what goes on the wire.
WIRE_POLICY = email.policy.SMTP
# The same with raw UTF-8 headers, for a mailbox name that is not ASCII (sent SMTPUTF8).
SMTPUTF8_POLICY = email.policy.SMTPUTF8

# Per-recipient values enter a prepared template through markers like this one. The
# nonce, new in each process, keeps article text from ever forging a marker.
_NONCE = secrets.token_hex(6)
_MARKER = re.compile(rf"NLSLOT{_NONCE}([a-z_]+)NLEND")
_ATEXT_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+$")
# RFC 6532 counts every non-ASCII character as atext.
_UTF8_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ \u0080-\U0010ffff-]+$")


def slot(name: str) -> str:
    """The marker a template renders where a per-recipient value goes."""
    return f"NLSLOT{_NONCE}{name}NLEND"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class OutgoingMessage:
    """One message ready for SMTP: who it is from on the envelope, to whom, and its bytes."""

    envelope_from: str
    recipient: str
    message_id: str
    data: bytes
    # CRLF line ends and no line that starts with a dot: SMTP's DATA takes the bytes as
    # they are, with no pass over the whole message to stuff dots (RFC 5321 4.5.2).
    wire_ready: bool = False


@dataclass(frozen=True)
class Recipient:
    """Everything that differs from one reader's copy of a message to the next."""

    address: str
    name: str
    envelope_from: str
    message_id: str
    # Values of the template's slots, as plain text (escaped here for the HTML part).
    values: Mapping[str, str] = field(default_factory=dict)


def render_email(name: str, context: dict[str, Any], *, language: str) -> RenderedEmail:
    """Render templates/email/<name>/{subject.txt, body.txt, body.html} in one language."""
    env = email_environment(language)
    # html_lang: what the HTML says it is written in (BCP 47: pt-PT, zh-Hans).
    context = {**context, "language": language, "html_lang": LANGUAGE_TAGS.get(language, language)}
    subject = env.get_template(f"{name}/subject.txt").render(context)
    text = env.get_template(f"{name}/body.txt").render(context)
    html = env.get_template(f"{name}/body.html").render(context)
    # One line, whatever the template's whitespace: a line break would end the header.
    subject = " ".join(subject.split())
    html = _inline_css(html).strip() + "\n"
    return RenderedEmail(subject=subject, text=_tidy_text(text), html=html)


class MessageTemplate:
    """A message prepared once and filled in per recipient, straight into wire bytes."""

    def __init__(
        self,
        rendered: RenderedEmail,
        *,
        from_name: str,
        from_address: str,
        headers: Sequence[tuple[str, str]],
        signer: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self._signer = signer
        # Header values may hold slots too (List-Unsubscribe holds the reader's link).
        self._from = _fold("From", _address_value(from_name, from_address))
        self._subject = _fold("Subject", rendered.subject)
        self._headers = [
            (name, value) if _MARKER.search(value) else (name, _fold(name, value))
            for name, value in [("Auto-Submitted", "auto-generated"), *headers]
        ]
        self._text = _QuotedPrintableBody(rendered.text)
        self._html = _QuotedPrintableBody(rendered.html)
        self._boundary = f"==============={secrets.randbelow(10**19):019d}=="
        self._mime_head = (
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="{self._boundary}"\r\n\r\n'
            f"--{self._boundary}\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        self._mime_middle = (
            f"\r\n--{self._boundary}\r\n"
            'Content-Type: text/html; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        self._mime_tail = f"\r\n--{self._boundary}--\r\n".encode()

    def fill(self, recipient: Recipient, *, date: datetime | None = None) -> OutgoingMessage:
        values = recipient.values
        html_values = {key: str(escape(value)) for key, value in values.items()}
        address = wire_address(recipient.address)
        head = [
            self._from,
            _to_header(recipient.name, address),
            self._subject,
            _date_line(date or utcnow()),
            f"Message-ID: {recipient.message_id}\r\n",
        ]
        for name, value in self._headers:
            head.append(value if value.endswith("\r\n") else _fold(name, _fill(value, values)))
        text, text_ready = self._text.encode(values)
        html, html_ready = self._html.encode(html_values)
        headers = "".join(head).encode()
        # Checked here: the headers and the few lines that carry the reader's values; the
        # lines without slots were checked once (_QuotedPrintableBody), the MIME parts
        # are ready by construction.
        wire_ready = text_ready and html_ready and _wire_ready(headers)
        data = b"".join([headers, self._mime_head, text, self._mime_middle, html, self._mime_tail])
        if self._signer is not None:
            signed = self._signer(data)
            wire_ready = wire_ready and _wire_ready(signed[: len(signed) - len(data)])
            data = signed
        return OutgoingMessage(
            envelope_from=recipient.envelope_from,
            recipient=address,
            message_id=recipient.message_id,
            data=data,
            wire_ready=wire_ready,
        )


def build_reference_message(
    rendered: RenderedEmail,
    *,
    from_name: str,
    from_address: str,
    headers: Sequence[tuple[str, str]],
    recipient: Recipient,
    date: datetime,
) -> OutgoingMessage:
    """The plain route: a fresh EmailMessage per recipient, serialised by the email package.

    Headers are serialised with a 998-character line limit (RFC 5322's hard one): at 78
    the email package turns a long List-Unsubscribe URL into RFC 2047 encoded words, which
    mail clients do not read there. Bodies were encoded when set, at 76 characters a line.
    """
    values = recipient.values
    html_values = {key: str(escape(value)) for key, value in values.items()}
    address = wire_address(recipient.address)
    # To a mailbox whose name is not ASCII, headers go as raw UTF-8 (RFC 6532).
    wire = WIRE_POLICY if address.isascii() else SMTPUTF8_POLICY
    message = EmailMessage(policy=wire)
    message["From"] = Address(display_name=from_name, addr_spec=from_address)
    message["To"] = Address(display_name=recipient.name, addr_spec=address)
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = recipient.message_id
    message["Auto-Submitted"] = "auto-generated"
    for name, value in headers:
        message[name] = _fill(value, values)
    message.set_content(_fill(rendered.text, values), charset="utf-8", cte="quoted-printable")
    message.add_alternative(
        _fill(rendered.html, html_values), subtype="html", charset="utf-8", cte="quoted-printable"
    )
    return OutgoingMessage(
        envelope_from=recipient.envelope_from,
        recipient=address,
        message_id=recipient.message_id,
        data=message.as_bytes(policy=wire.clone(max_line_length=998)),
    )


def wire_address(address: str) -> str:
    """The address as it goes on the wire, in the envelope and in To:.

    A non-ASCII domain goes as IDNA (xn--), which every relay carries; only a mailbox
    name that is not ASCII (joão@…) stays UTF-8, and then needs a relay offering
    SMTPUTF8 (RFC 6531): newsletter.sending.transport refuses to send it otherwise.
    """
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        # Validated at signup, so this is an address kept from before: left as it is.
        return address
    return f"{local}@{domain}"


def make_message_id(domain: str, local: str | None = None) -> str:
    return f"<{local or secrets.token_hex(8)}.{secrets.token_hex(6)}@{domain}>"


@lru_cache(maxsize=8)
def email_environment(language: str) -> Environment:
    """The Jinja environment of one language's emails (its catalog installed)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR / "email"),
        # Article text and names are data, never markup: escape everything in HTML bodies.
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["long_date"] = lambda moment: long_date(moment, language)
    env.filters["duration"] = lambda seconds: duration(seconds, language)
    return env


class _QuotedPrintableBody:
    """A body encoded as quoted-printable once, but for the lines that hold slots.

    Quoted-printable is line by line, so the lines without a slot are encoded here, once,
    and a reader's copy encodes only the few lines that carry their name or links.
    """

    def __init__(self, body: str) -> None:
        self._parts: list[bytes | list[str]] = []
        literal: list[str] = []
        for line in body.replace("\r\n", "\n").split("\n"):
            if _MARKER.search(line):
                self._flush(literal)
                # Even items are literal text, odd items are slot names.
                self._parts.append(_MARKER.split(line))
            else:
                literal.append(line)
        self._flush(literal)
        self.wire_ready = all(_wire_ready(p) for p in self._parts if isinstance(p, bytes))

    def _flush(self, lines: list[str]) -> None:
        if lines:
            self._parts.append(_qp("\r\n".join(lines)))
            lines.clear()

    def encode(self, values: Mapping[str, str]) -> tuple[bytes, bool]:
        """The reader's body, and whether it is ready for the wire as it is (_wire_ready)."""
        encoded = []
        ready = self.wire_ready
        for part in self._parts:
            if isinstance(part, bytes):
                encoded.append(part)
            else:
                filled = part[:]
                filled[1::2] = [values[name] for name in part[1::2]]
                line = _qp("".join(filled))
                ready = ready and _wire_ready(line)
                encoded.append(line)
        return b"\r\n".join(encoded), ready


def _date_line(moment: datetime) -> str:
    """The Date: header; written to the second, so made once a second, not per message."""
    # The offset is in the key: one instant given in two zones is written in each's own.
    return _date_line_of_second(moment.replace(microsecond=0), moment.utcoffset())


@lru_cache(maxsize=2)
def _date_line_of_second(second: datetime, offset: timedelta | None) -> str:
    return f"Date: {format_datetime(second)}\r\n"


def _wire_ready(part: bytes) -> bool:
    """Whether these bytes, starting a line, go into SMTP's DATA as they are: every line
    ends in CRLF and none starts with a dot (which the wire would need doubled)."""
    crlf = part.count(b"\r\n")
    return (
        not part.startswith(b".")
        and b"\n." not in part
        and part.count(b"\n") == crlf
        and part.count(b"\r") == crlf  # a bare CR passes quoted-printable as it is
    )


def _qp(text: str) -> bytes:
    # b2a_qp picks its line end from the first one it meets; a text with none (one long
    # line) would get bare-LF soft breaks, so it is shown a CRLF and the CRLF cut off.
    return binascii.b2a_qp(text.encode() + b"\r\n", istext=True)[:-2]


def _fill(text: str, values: Mapping[str, str]) -> str:
    return _MARKER.sub(lambda match: values[match.group(1)], text)


def _fold(name: str, value: str) -> str:
    """One header, folded and encoded as RFC 5322 and RFC 2047 want, ending in CRLF."""
    value = _without_line_breaks(value)
    line = f"{name}: {value}"
    if value.isascii() and len(line) <= 78:
        return line + "\r\n"
    if value.isascii():
        # Long ASCII values (List-Unsubscribe's URLs) fold at their separators and are never
        # turned into encoded words, which mail clients would not read in such headers.
        return _fold_ascii(name, value)
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n"


def _fold_ascii(name: str, value: str) -> str:
    lines: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        if len(current) + 1 + len(word) > 78 and current != f"{name}:":
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return "\r\n".join(lines) + "\r\n"


def _to_header(name: str, address: str) -> str:
    """To:, encoded as ASCII headers are; to a non-ASCII mailbox name, raw UTF-8 instead.

    An RFC 2047 encoded word may not hold an address, so encoding `Name <joão@…>` would
    leave a To: with no address in it: such a message is written as RFC 6532 wants.
    """
    if address.isascii():
        return _fold("To", _address_value(name, address))
    name = _LINE_BREAKS.sub(" ", name).strip()
    if not name:
        return f"To: {address}\r\n"
    if not _UTF8_PHRASE.match(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    line = f"To: {name} <{address}>"
    # RFC 5322's hard limit is 998 octets a line; a long name folds before the address.
    return line + "\r\n" if len(line.encode()) <= 998 else f"To: {name}\r\n <{address}>\r\n"


def _address_value(name: str, address: str) -> str:
    """`Name <address>`, quoting or encoding the name as it needs."""
    name = _LINE_BREAKS.sub(" ", name).strip()
    if not name:
        return address
    if not name.isascii():
        encoded = Header(name, "utf-8").encode(linesep="\r\n")
        return f"{encoded} <{address}>"
    if _ATEXT_PHRASE.match(name):
        return f"{name} <{address}>"
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


# A line break in a header value that is not a fold (CRLF then a space or tab) would end
# the header there: a reader's name "Ana\r\nBcc: …" must not add a recipient.
_LINE_BREAKS = re.compile(r"[\r\n\x00\x0b\x0c\x85\u2028\u2029]+")
_NOT_A_FOLD = re.compile(r"\r\n(?=[ \t])|[\r\n\x00]+")


def _without_line_breaks(value: str) -> str:
    return _NOT_A_FOLD.sub(lambda m: m.group(0) if m.group(0) == "\r\n" else " ", value)


def _tidy_text(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines()) + "\n"


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # Media queries (narrow screens, dark mode) only work from a <style> block: keep them.
    # Remote stylesheets are never fetched: templates are self-contained.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def _inline_css(html: str) -> str:
    return _inliner().inline(html)
