"""Reading returned mail: DSNs, old-style text bounces, ARF complaints and auto-replies."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses
from functools import cached_property
from typing import Any

from flufl.bounce import all_failures

from newsletter.email.addresses import bounce_tokens_in

log = logging.getLogger("newsletter.bounces.parsing")

# Bounces are small; a DSN that quotes a whole digest is well under this. The SMTP door
# takes no more either.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024

# Real bounces nest three or four levels (report, alternative, returned message, its
# parts); anything deeper is a crafted message, read no further than this.
MAX_DEPTH = 20


class BounceParseError(ValueError):
    """Input that is not a mail message at all: empty, or larger than we read."""


@dataclass(frozen=True)
class BounceReport:
    """What a returned message says: which kind of failure, for whom, and why."""

    kind: str  # "hard" | "soft" | "complaint" | "none"
    recipients: list[str] = field(default_factory=list)
    status: str | None = None
    diagnostic: str | None = None
    verp_tokens: list[str] = field(default_factory=list)
    original_message_id: str | None = None
    feedback_type: str | None = None
    # The domain of the report's From: whom a mailed complaint says it comes from.
    sender_domain: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_bounce(raw: bytes, *, envelope_recipients: Sequence[str] = ()) -> BounceReport:
    """Classify a returned message; "none" for auto-replies and anything not understood.

    `envelope_recipients` are the SMTP RCPT TO addresses, searched first for VERP tokens.
    Raises BounceParseError only for empty input or input over MAX_MESSAGE_BYTES.
    """
    if not raw.strip():
        raise BounceParseError("The message is empty.")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BounceParseError(f"The message is larger than {MAX_MESSAGE_BYTES} bytes.")
    try:
        message = BytesParser(policy=compat32).parsebytes(raw)
        walk = _walk(message)
    except Exception:  # the stdlib parser recurses per nesting level; absurd input ends here
        log.info("a returned message could not be parsed as MIME", exc_info=True)
        return BounceReport(
            "none", verp_tokens=_verp_tokens(_header_only(raw, envelope_recipients))
        )

    returned = _returned_headers(walk)
    found = _Found(
        verp_tokens=_verp_tokens(
            [
                *envelope_recipients,
                *_envelope_headers(message),
                *_returned_return_paths(walk, returned),
            ]
        ),
        original_message_id=_original_message_id(walk, returned),
        sender_domain=_sender_domain(message),
    )
    complaint = _complaint(message, walk, returned, found)
    if complaint is not None:
        return complaint
    notification = _Notification(walk)
    failures = _dsn_failures(walk, notification)
    if failures is None:
        if _is_auto_reply(message):
            return found.report("none")
        failures = _text_failures(raw, walk, notification)
    return _report_of(failures, found)


def _header_only(raw: bytes, envelope_recipients: Sequence[str]) -> list[str]:
    """Where a VERP token may be when the body could not be parsed."""
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    except Exception:
        return list(envelope_recipients)
    return [*envelope_recipients, *_envelope_headers(headers)]


@dataclass(frozen=True)
class _Found:
    """What every report carries, whatever its kind."""

    verp_tokens: list[str]
    original_message_id: str | None
    sender_domain: str | None = None

    def report(self, kind: str, **fields: Any) -> BounceReport:
        return BounceReport(
            kind,
            verp_tokens=self.verp_tokens,
            original_message_id=self.original_message_id,
            sender_domain=self.sender_domain,
            **fields,
        )


@dataclass(frozen=True)
class _Failure:
    address: str
    kind: str  # "hard" | "soft"
    status: str | None
    diagnostic: str | None


def _report_of(failures: list[_Failure], found: _Found) -> BounceReport:
    hard = [failure for failure in failures if failure.kind == "hard"]
    chosen = hard or [failure for failure in failures if failure.kind == "soft"]
    if not chosen:
        return found.report("none")
    return found.report(
        chosen[0].kind,
        recipients=_dedupe(failure.address for failure in chosen),
        status=chosen[0].status,
        diagnostic=chosen[0].diagnostic,
    )


# --- walking the MIME tree -------------------------------------------------------------

# Report parts whose payload the parser reads as header blocks, not as a message.
_REPORT_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "message/feedback-report"}
)
_RETURNED_TYPES = frozenset(
    {
        "message/rfc822",
        "message/global",
        "message/rfc822-headers",
        "message/global-headers",
        "text/rfc822-headers",
    }
)
_MAX_PARTS = 2000
_MAX_BLOCKS = 500
_TEXT_LIMIT = 256 * 1024


@dataclass
class _Walk:
    """The message's parts in document order, down to MAX_DEPTH."""

    parts: list[tuple[Message, bool]]  # (part, whether it lies inside a returned message)
    complete: bool  # False when parts lay deeper than MAX_DEPTH or past _MAX_PARTS


def _walk(message: Message) -> _Walk:
    # Iterative, so a message nested thousands deep cannot exhaust the stack here.
    parts: list[tuple[Message, bool]] = []
    complete = True
    stack: list[tuple[Message, int, bool]] = [(message, 0, False)]
    while stack and len(parts) < _MAX_PARTS:
        part, depth, inside_returned = stack.pop()
        parts.append((part, inside_returned))
        content_type = part.get_content_type()
        if content_type in _REPORT_TYPES or not part.is_multipart():
            continue
        if depth >= MAX_DEPTH:
            complete = False
            continue
        payload = part.get_payload()
        if not isinstance(payload, list):
            continue
        children = [child for child in payload if isinstance(child, Message)]
        returned = inside_returned or (depth > 0 and content_type in _RETURNED_TYPES)
        stack.extend((child, depth + 1, returned) for child in reversed(children))
    return _Walk(parts, complete and not stack)


def _returned_headers(walk: _Walk) -> list[Message]:
    """The headers of each returned original message, outermost first."""
    found: list[Message] = []
    for part, _inside in walk.parts[1:]:
        if part.get_content_type() not in _RETURNED_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            found.extend(block for block in payload[:1] if isinstance(block, Message))
        else:
            found.append(HeaderParser(policy=compat32).parsestr(_text(part)))
    return found


def _notification_parts(walk: _Walk) -> list[Message]:
    """The bounce's own text parts: not the returned message, not the report blocks."""
    return [
        part
        for part, inside_returned in walk.parts
        if not inside_returned
        and not part.is_multipart()
        and part.get_content_type() == "text/plain"
    ]


def _text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding is still a message we must answer for
        return ""
    if not isinstance(payload, bytes):
        return ""
    payload = payload[:_TEXT_LIMIT]
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except Exception:  # unknown or non-text charsets name nothing we can honour
        return payload.decode("utf-8", "replace")


def _header(message: Message, name: str) -> str:
    return _clean(message.get(name, ""))


def _headers(message: Message, name: str) -> list[str]:
    return [_clean(value) for value in message.get_all(name, [])]


def _clean(value: object) -> str:
    # Undecodable bytes in headers come back as surrogates, or as Header objects.
    try:
        text = str(value)
    except Exception:
        return ""
    return text.encode("utf-8", "replace").decode("utf-8")


# --- where the VERP tokens and the original Message-ID are --------------------------

_ENVELOPE_HEADERS = (
    "to",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "return-path",
)
_QUOTED_RETURN_PATH = re.compile(r"^[ \t>]*return-path:[^\n]{0,400}", re.IGNORECASE | re.MULTILINE)
_QUOTED_MESSAGE_ID = re.compile(
    r"^[ \t>]*message-id:[ \t]*(<[^<>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE
)
_BRACKETED_ID = re.compile(r"<[^<>\s]{1,250}>")


def _verp_tokens(texts: Iterable[str]) -> list[str]:
    return _dedupe(token for text in texts for token in bounce_tokens_in(text))


def _envelope_headers(message: Message) -> list[str]:
    return [value for name in _ENVELOPE_HEADERS for value in _headers(message, name)]


def _returned_return_paths(walk: _Walk, returned: list[Message]) -> list[str]:
    """Our envelope sender as the returned message (or an ARF report) carries it."""
    paths = [value for headers in returned for value in _headers(headers, "return-path")]
    paths += [
        value
        for part, _inside in walk.parts
        if part.get_content_type() == "message/feedback-report"
        for block in _report_blocks(part)
        for value in _headers(block, "original-mail-from")
    ]
    for part in _notification_parts(walk):  # an original quoted inline, as Exim and qmail do
        paths += _QUOTED_RETURN_PATH.findall(_text(part))
    return paths


def _original_message_id(walk: _Walk, returned: list[Message]) -> str | None:
    for headers in returned:
        if message_id := _message_id(_header(headers, "message-id")):
            return message_id
    for part, _inside in walk.parts:
        if part.get_content_type() in {"message/delivery-status", "message/global-delivery-status"}:
            # Gmail names the original in the per-message block of its DSN.
            for block in _report_blocks(part)[:1]:
                if message_id := _message_id(_header(block, "x-original-message-id")):
                    return message_id
    for part in _notification_parts(walk):
        if match := _QUOTED_MESSAGE_ID.search(_text(part)):
            return match.group(1)
    return None


def _message_id(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if match := _BRACKETED_ID.search(value):
        return match.group(0)
    return f"<{value.split()[0][:250]}>"


# --- complaints (RFC 5965 ARF) ----------------------------------------------------------


def _complaint(
    message: Message, walk: _Walk, returned: list[Message], found: _Found
) -> BounceReport | None:
    reports = [
        part for part, _inside in walk.parts if part.get_content_type() == "message/feedback-report"
    ]
    report_type = _clean(message.get_param("report-type", "") or "").lower()
    if not reports and not (
        message.get_content_type() == "multipart/report" and report_type == "feedback-report"
    ):
        return None
    fields = _report_blocks(reports[0])[:1] if reports else []
    feedback_type = next((_header(block, "feedback-type").strip().lower() for block in fields), "")
    if feedback_type == "not-spam":  # a reader rescuing our mail from the spam folder
        return found.report("none", feedback_type=feedback_type)
    recipients = _addresses(
        value for block in fields for value in _headers(block, "original-rcpt-to")
    )
    # Microsoft's JMRP names the complainer only on the returned message.
    for header in ("x-hmxmroriginalrecipient", "to"):
        if not recipients:
            recipients = _addresses(
                value for headers in returned for value in _headers(headers, header)
            )
    return found.report("complaint", recipients=recipients, feedback_type=feedback_type or None)


def _report_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [block for block in payload[:_MAX_BLOCKS] if isinstance(block, Message)]
        if part.get_content_type() == "message/delivery-status":
            return blocks
        # Other message/* types are read as one message: the first block, then the rest.
        try:
            text = "".join(block.as_string() for block in blocks)
        except Exception:
            return blocks
    else:
        text = _text(part)
    chunks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    parser = HeaderParser(policy=compat32)
    return [
        parser.parsestr(chunk.strip("\n") + "\n") for chunk in chunks[:_MAX_BLOCKS] if chunk.strip()
    ]


_ADDRESS = re.compile(r"[^\s@<>\"(),;:]{1,200}@[^\s@<>\"(),;:]{1,200}")


def _addresses(values: Iterable[str]) -> list[str]:
    found = [address for _name, address in _parsed_addresses(values)]
    return _dedupe(address.lower() for address in found if _ADDRESS.fullmatch(address))


def _parsed_addresses(values: Iterable[str]) -> list[tuple[str, str]]:
    try:
        return getaddresses([value[:2000] for value in values])
    except Exception:  # nested comments recurse in the stdlib; a crafted header can overflow
        return []


# --- delivery status notifications (RFC 3464) ------------------------------------------

_DSN_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "text/delivery-status"}
)
_STATUS = re.compile(r"(?<![\w.])([245]\.\d{1,3}\.\d{1,3})(?!\d|\.\d)")
_FAILURE_STATUS = re.compile(r"(?<![\w.])([45]\.\d{1,3}\.\d{1,3})(?!\d|\.\d)")
_REPLY_CODE = re.compile(r"(?<![\w.:/#+-])([45][0-5]\d)(?=[ :-]|$)", re.MULTILINE)
_MAILBOX_FULL = re.compile(
    r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|exceded|full)|exceeded (?:the |its )?"
    r"(?:storage|quota)|insufficient (?:system )?storage|out of storage|mailbox size limit",
    re.IGNORECASE,
)


def _dsn_failures(walk: _Walk, notification: _Notification) -> list[_Failure] | None:
    """Failed and delayed recipients of the DSN parts; None when there is no DSN."""
    failures: list[_Failure] = []
    seen_recipient = False
    for part, inside_returned in walk.parts:
        if inside_returned or part.get_content_type() not in _DSN_TYPES:
            continue
        for block in _report_blocks(part):
            address = _dsn_address(_header(block, "original-recipient")) or _dsn_address(
                _header(block, "final-recipient")
            )
            if address is None:
                continue  # the per-message block
            seen_recipient = True
            failure = _dsn_failure(block, address, notification)
            if failure is not None:
                failures.append(failure)
    return failures if seen_recipient else None


def _dsn_failure(block: Message, address: str, notification: _Notification) -> _Failure | None:
    action = _header(block, "action").strip().lower()
    diagnostic = _one_line(_header(block, "diagnostic-code")) or None
    status_match = _STATUS.search(_header(block, "status"))
    status = status_match.group(1) if status_match else None
    if diagnostic is None or status is None:
        near_status, near_diagnostic = notification.status_near(address)
        diagnostic = diagnostic or near_diagnostic
        status = status or _failure_status_in(diagnostic) or near_status
    if action.startswith("delayed"):
        return _Failure(address, "soft", status, diagnostic)
    if action and not action.startswith(("failed", "error")):  # opensmtpd says "error"
        return None  # delivered, relayed, expanded: a success notice
    status_class = _status_class(status, diagnostic)
    if not action and status_class is None:
        return None
    return _Failure(address, _kind_of(status_class, status, diagnostic), status, diagnostic)


def _status_class(status: str | None, diagnostic: str | None) -> str | None:
    if status:
        return status[0]
    reply = _REPLY_CODE.search(diagnostic or "")
    return reply.group(1)[0] if reply else None


def _kind_of(status_class: str | None, status: str | None, diagnostic: str | None) -> str:
    # A full mailbox still belongs to a reader; Mailman and the ESPs count it as soft.
    if status_class == "4" or (status or "").endswith(".2.2"):
        return "soft"
    if diagnostic and _MAILBOX_FULL.search(diagnostic):
        return "soft"
    return "hard"


def _dsn_address(value: str) -> str | None:
    address = value.split(";", 1)[-1].strip().strip("<>").strip().lower()
    return address if _ADDRESS.fullmatch(address) else None


def _failure_status_in(text: str | None) -> str | None:
    match = _FAILURE_STATUS.search(text or "")
    return match.group(1) if match else None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


# --- auto-replies and challenge-response -------------------------------------------------

_AUTO_REPLY_HEADERS = (
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-autoreply-from",
    "x-mail-autoreply",
    "x-challenge",
)
_AUTO_REPLY_SUBJECT = re.compile(
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|auto[- ]?respon|autorespon"
    r"|vacation|on leave|away from (?:my|the) (?:desk|office)|abwesenheit|automatische antwort"
    r"|r[ée]ponse automatique|absen[tc]|ausente|fora do escrit[óo]rio|resposta autom[áa]tica"
    r"|respuesta autom[áa]tica|fuera de la oficina|risposta automatica"
    r"|自动回复|自動回覆|自動回复|自動返信|自動応答"
    r"|verify your e-?mail|confirm (?:that )?you(?: are|'re) (?:a )?human|are you (?:a )?human"
    r"|challenge|anti-?spam (?:verification|protection)|please confirm your (?:e-?mail|message)",
    re.IGNORECASE,
)
_DAEMONS = ("mailer-daemon", "mailer_daemon", "mail-daemon", "maildaemon", "postmaster")


def _is_auto_reply(message: Message) -> bool:
    """RFC 3834 auto-replies, vacation notices and challenge-response requests."""
    if any(message.get(name) is not None for name in _AUTO_REPLY_HEADERS):
        return True
    precedence = f"{_header(message, 'precedence')} {_header(message, 'x-precedence')}"
    if "auto_reply" in precedence.lower():
        return True
    if _is_from_daemon(message):
        return False  # bounces carry Auto-Submitted too (Postfix and Exim set it)
    if _header(message, "auto-submitted").strip().lower().startswith("auto-replied"):
        return True
    return bool(_AUTO_REPLY_SUBJECT.search(_subject(message)))


def _sender_domain(message: Message) -> str | None:
    addresses = [a for _name, a in _parsed_addresses([_header(message, "from")]) if "@" in a]
    return addresses[0].rpartition("@")[2].strip().lower() or None if addresses else None


def _is_from_daemon(message: Message) -> bool:
    if message.get("x-failed-recipients") is not None:
        return True
    return any(
        address.lower().startswith(_DAEMONS) or "mail delivery" in name.lower()
        for name, address in _parsed_addresses([_header(message, "from")])
    )


def _subject(message: Message) -> str:
    # Cut before decoding: the encoded-word pattern is slow on a crafted megabyte subject.
    raw = _header(message, "subject")[:1000]
    try:
        return str(make_header(decode_header(raw)))
    except Exception:
        return raw


# --- old-style text bounces, read by flufl.bounce --------------------------------------

_MAX_FAILURES = 100


def _text_failures(raw: bytes, walk: _Walk, notification: _Notification) -> list[_Failure]:
    if not walk.complete:
        return []  # flufl.bounce walks without a depth limit
    try:
        temporary, permanent = all_failures(_flufl_view(raw))
    except Exception:
        log.info("flufl.bounce could not read a returned message", exc_info=True)
        return []
    failures: list[_Failure] = []
    for addresses, verdict in ((permanent, "hard"), (temporary, "soft")):
        for raw_address in sorted(addresses)[:_MAX_FAILURES]:
            address = raw_address.decode("ascii", "replace").strip().strip("<>").lower()
            if not _ADDRESS.fullmatch(address):
                continue
            status, diagnostic = notification.status_near(address)
            status_class = _status_class(status, diagnostic)
            kind = verdict
            if status_class is not None or (diagnostic and _MAILBOX_FULL.search(diagnostic)):
                kind = _kind_of(status_class, status, diagnostic)
            failures.append(_Failure(address, kind, status, diagnostic))
    return failures


# flufl.bounce's heuristics search each line with patterns that are quadratic (one is
# cubic) in the line's length, so it reads the message's head with lines cut short:
# real bounces say what failed in their first few kilobytes, in short lines.
_FLUFL_HEADER_BYTES = 64 * 1024
_FLUFL_BODY_BYTES = 24 * 1024
_FLUFL_LINE = 128
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _flufl_view(raw: bytes) -> Message:
    end = _HEADER_END.search(raw)
    head, body = (raw[: end.end()], raw[end.end() :]) if end else (raw, b"")
    view = BytesParser(policy=compat32).parsebytes(
        head[:_FLUFL_HEADER_BYTES] + _wrapped(body[:_FLUFL_BODY_BYTES])
    )
    for part, _inside in _walk(view).parts:
        if part.is_multipart():
            continue
        decoded = part.get_payload(decode=True)
        if isinstance(decoded, bytes):  # decoding can join short lines into a long one
            del part["content-transfer-encoding"]
            part.set_payload(_wrapped(decoded).decode("latin-1"))
    if not _parsed_addresses([_header(view, "from")]):
        # One detector takes the first From address without asking whether there is one.
        del view["from"]
        view["From"] = "unknown@invalid"
    return view


def _wrapped(data: bytes) -> bytes:
    return b"\n".join(
        line[at : at + _FLUFL_LINE]
        for line in data.split(b"\n")
        for at in range(0, max(len(line), 1), _FLUFL_LINE)
    )


class _Notification:
    """The bounce's own words, up to where it starts quoting the returned message."""

    _RETURNED_COPY_MARKERS = (
        "copy of the message",
        "copy of your message",
        "original message",
        "returned message",
        "message follows",
        "message headers follow",
        "returned mail follows",
    )
    _LIMIT = 1024 * 1024

    def __init__(self, walk: _Walk) -> None:
        self._walk = walk

    @cached_property
    def text(self) -> str:
        texts: list[str] = []
        for part in _notification_parts(self._walk):
            kept: list[str] = []
            for line in _text(part).splitlines():
                folded = line.strip().lower()
                if folded.startswith(("--", "==", "original message headers")) and any(
                    marker in folded for marker in self._RETURNED_COPY_MARKERS
                ):
                    break
                kept.append(line)
            texts.append("\n".join(kept))
        return "\n".join(texts)[: self._LIMIT]

    def status_near(self, address: str) -> tuple[str | None, str | None]:
        """The enhanced status code and the reply line nearest after the address, if any."""
        mention = re.search(re.escape(address), self.text, re.IGNORECASE)
        window = (
            self.text[mention.start() : mention.start() + 1000] if mention else self.text[:4000]
        )
        status = _FAILURE_STATUS.search(window)
        reply = _REPLY_CODE.search(window)
        matches = [match for match in (reply, status) if match is not None]
        if not matches:
            return None, None
        first = min(matches, key=lambda match: match.start())
        line_start = window.rfind("\n", 0, first.start()) + 1
        line_end = window.find("\n", first.end())
        line = window[line_start : line_end if line_end >= 0 else len(window)]
        return (status.group(1) if status else None), (_one_line(line) or None)


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))
