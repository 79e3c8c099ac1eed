"""Email rendering: Jinja templates under templates/email/, CSS inlining, MIME building."""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from newsletter.config import TEMPLATES_DIR
from newsletter.models import utcnow

# CRLF line ends and RFC-conformant folding: what goes on the wire.
WIRE_POLICY = email.policy.SMTP


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


def render_email(name: str, context: dict[str, Any], *, language: str) -> RenderedEmail:
    """Render templates/email/<name>/{subject.txt, body.txt, body.html} in one language."""
    env = email_environment()
    context = {**context, "language": language}
    subject = env.get_template(f"{name}/subject.txt").render(context)
    text = env.get_template(f"{name}/body.txt").render(context)
    html = env.get_template(f"{name}/body.html").render(context)
    # One line, whatever the template's whitespace: a line break would end the header.
    subject = " ".join(subject.split())
    return RenderedEmail(subject=subject, text=text.strip() + "\n", html=_inline_css(html))


def build_message(
    rendered: RenderedEmail,
    *,
    from_name: str,
    from_address: str,
    to_address: str,
    to_name: str = "",
    envelope_from: str,
    mail_domain: str,
    headers: dict[str, str] | None = None,
) -> OutgoingMessage:
    """A multipart/alternative message (text first, HTML last) with the headers given."""
    message = EmailMessage(policy=WIRE_POLICY)
    message["From"] = Address(display_name=from_name, addr_spec=from_address)
    message["To"] = Address(display_name=to_name, addr_spec=to_address)
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(utcnow())
    message_id = make_msgid(domain=mail_domain)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    for header, value in (headers or {}).items():
        message[header] = value
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return OutgoingMessage(
        envelope_from=envelope_from,
        recipient=to_address,
        message_id=message_id,
        data=message.as_bytes(policy=WIRE_POLICY),
    )


@lru_cache(maxsize=1)
def email_environment() -> Environment:
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
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    return env


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # Media queries (narrow screens, dark mode) only work from a <style> block: keep them.
    # Remote stylesheets are never fetched: templates are self-contained.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def _inline_css(html: str) -> str:
    return _inliner().inline(html)
