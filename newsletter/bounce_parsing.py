"""Reading what came back: DSNs, ARF complaints, auto-replies, and the VERP token in them."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from typing import Any

from flufl.bounce import all_failures

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 20

_VERP = re.compile(r"bounces\+([a-z0-9-]{1,80})@", re.IGNORECASE)
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_AUTO_SUBJECT = re.compile(
    r"out of (the )?office|automatic reply|auto[- ]?reply|autoresponder|vacation|"
    r"ausente|fora do escrit|resposta autom|自动回复|verify your (email|address)|"
    r"confirm (that )?you are (a )?human|challenge",
    re.IGNORECASE,
)
_FAILURE_SUBJECT = re.compile(
    r"undeliver|delivery (status|failure|failed|notification)|failure notice|returned mail|"
    r"mail delivery failed|returning message to sender|non.?delivery",
    re.IGNORECASE,
)
_ENVELOPE_HEADERS = (
    "To",
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "X-Envelope-To",
    "Return-Path",
)


class BounceParseError(ValueError):
    """The bytes are no mail message at all (empty, or too large to be a bounce)."""


@dataclass(frozen=True)
class BounceReport:
    kind: str  # hard, soft, complaint, none
    recipients: list[str] = field(default_factory=list)
    status: str | None = None
    diagnostic: str | None = None
    verp_tokens: list[str] = field(default_factory=list)
    original_message_id: str | None = None
    feedback_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_bounce(raw: bytes, *, envelope_recipients: Sequence[str] = ()) -> BounceReport:
    """What a returned message is, whom it is about, and which of our messages it returns."""
    if not raw.strip():
        raise BounceParseError("the message is empty")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BounceParseError(f"the message is larger than {MAX_MESSAGE_BYTES // 2**20} MB")
    message = message_from_bytes(raw, policy=compat32)
    parts = list(_walk(message))
    tokens = _tokens(envelope_recipients, message, parts)
    original_id = _original_message_id(parts, raw)
    report = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if report is not None:
        fields = _fields(report)
        recipient = fields.get("original-rcpt-to") or _returned_to(parts)
        return BounceReport(
            "complaint",
            [_address(recipient)] if recipient else [],
            verp_tokens=tokens,
            original_message_id=original_id,
            feedback_type=fields.get("feedback-type", "abuse"),
        )
    dsn = _delivery_status(parts)
    if dsn is not None:
        kind, recipients, status, diagnostic = dsn
        return BounceReport(kind, recipients, status, diagnostic, tokens, original_id)
    # Bounces and auto-replies both say Auto-Submitted; only a failure notice is a bounce.
    if not _is_failure_notice(message) and _is_auto_reply(message):
        return BounceReport("none", verp_tokens=tokens)
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # flufl.bounce on broken MIME: nothing we can read
        return BounceReport("none", verp_tokens=tokens)
    failed = sorted({_address(a) for a in permanent}) or sorted({_address(a) for a in temporary})
    if not failed:
        return BounceReport("none", verp_tokens=tokens)
    text = _text(parts)
    status_match = _STATUS.search(text)
    status = status_match.group(1) if status_match else None
    kind = "hard" if permanent and not (status or "").startswith("4") else "soft"
    if status == "5.2.2":
        kind = "soft"
    return BounceReport(kind, failed, status, _diagnostic_line(text), tokens, original_id)


def _walk(message: Message, depth: int = 0) -> Iterator[Message]:
    yield message
    if depth >= MAX_DEPTH or not message.is_multipart():
        return
    payload = message.get_payload()
    if isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from _walk(part, depth + 1)


def _delivery_status(parts: list[Message]) -> tuple[str, list[str], str | None, str | None] | None:
    part = next((p for p in parts if p.get_content_type() == "message/delivery-status"), None)
    if part is None:
        return None
    blocks = _status_blocks(part)
    hard, soft, statuses, diagnostics = [], [], [], []
    for block in blocks:
        recipient = block.get("final-recipient") or block.get("original-recipient")
        action = (block.get("action") or "").lower()
        status = (_STATUS.search(block.get("status", "")) or [None, None])[1]
        if not recipient or action in {"delivered", "relayed", "expanded"}:
            continue
        address = _address(recipient)
        if action == "failed" and status and status.startswith("5") and status != "5.2.2":
            hard.append(address)
        elif action in {"failed", "delayed"}:
            soft.append(address)
        else:
            continue
        statuses.append(status)
        diagnostics.append(block.get("diagnostic-code"))
    if not hard and not soft:
        return None
    kind = "hard" if hard else "soft"
    first = 0
    return kind, hard or soft, statuses[first], _one_line(diagnostics[first])


def _status_blocks(part: Message) -> list[dict[str, str]]:
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parsed the blocks as header sets
        return [_fields(block) for block in payload if isinstance(block, Message)][1:] or [
            _fields(block) for block in payload if isinstance(block, Message)
        ]
    text = payload if isinstance(payload, str) else ""
    blocks = []
    for chunk in re.split(r"\r?\n\s*\r?\n", text):
        fields = {}
        for line in re.sub(r"\r?\n[ \t]+", " ", chunk).splitlines():
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        if fields:
            blocks.append(fields)
    return blocks[1:] or blocks


def _fields(part: Message) -> dict[str, str]:
    if part.is_multipart():
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            part = payload[0]
    fields = {name.lower(): str(value).strip() for name, value in part.items()}
    body = part.get_payload()
    if isinstance(body, str):
        for line in re.sub(r"\r?\n[ \t]+", " ", body).splitlines():
            name, sep, value = line.partition(":")
            if sep and " " not in name.strip():
                fields.setdefault(name.strip().lower(), value.strip())
    return fields


def _tokens(envelope: Sequence[str], message: Message, parts: list[Message]) -> list[str]:
    found: list[str] = []
    candidates = list(envelope)
    candidates += [str(v) for name in _ENVELOPE_HEADERS for v in message.get_all(name, [])]
    for part in parts[1:]:
        candidates += [str(v) for v in part.get_all("Return-Path", [])]
        if part.get_content_type() == "text/rfc822-headers":
            body = part.get_payload()
            if isinstance(body, str):
                candidates += re.findall(r"(?im)^return-path:\s*(.+)$", body)
    for candidate in candidates:
        for token in _VERP.findall(candidate):
            if token.lower() not in found:
                found.append(token.lower())
    return found


def _original_message_id(parts: list[Message], raw: bytes) -> str | None:
    for part in parts[1:]:
        if part.get("Message-ID") and part is not parts[0]:
            return str(part["Message-ID"]).strip()
        if part.get_content_type() == "text/rfc822-headers":
            body = part.get_payload()
            match = re.search(
                r"(?im)^message-id:\s*(<[^>\s]+>)", body if isinstance(body, str) else ""
            )
            if match:
                return match.group(1)
    # An old-style bounce quotes the original inline, below its own headers.
    _, _, body = raw.partition(b"\n\n")
    inline = re.search(rb"(?im)^message-id:\s*(<[^>\s]{1,300}>)", body[:200_000])
    return inline.group(1).decode("ascii", "replace") if inline else None


def _returned_to(parts: list[Message]) -> str | None:
    for part in parts[1:]:
        if part.get("To") and part is not parts[0]:
            return str(part["To"])
    return None


def _is_auto_reply(message: Message) -> bool:
    if str(message.get("Auto-Submitted", "")).lower().startswith("auto-replied"):
        return True
    if any(message.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Challenge")):
        return True
    if str(message.get("Precedence", "")).lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(_subject(message)))


def _is_failure_notice(message: Message) -> bool:
    sender = str(message.get("From", "")).lower()
    return (
        message.get("X-Failed-Recipients") is not None
        or any(who in sender for who in ("mailer-daemon", "postmaster", "mail delivery"))
        or bool(_FAILURE_SUBJECT.search(_subject(message)))
    )


def _subject(message: Message) -> str:
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(str(message.get("Subject", "")))))
    except (ValueError, LookupError, UnicodeError):
        return str(message.get("Subject", ""))


def _text(parts: list[Message]) -> str:
    chunks = []
    for part in parts:
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                chunks.append(payload[:100_000].decode("utf-8", "replace"))
    return "\n".join(chunks)


def _diagnostic_line(text: str) -> str | None:
    for line in text.splitlines():
        if re.search(r"\b[45]\d\d\b", line):
            return _one_line(line)
    return None


def _one_line(value: str | None) -> str | None:
    return " ".join(value.split())[:500] if value else None


def _address(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = text.split(";", 1)[-1]  # "rfc822; someone@example.com"
    match = re.search(r"[^\s<>;\"']+@[^\s<>;\"']+", text)
    return (match.group(0) if match else text.strip()).lower()
