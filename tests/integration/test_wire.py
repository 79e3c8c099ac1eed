"""The bytes of a message on the SMTP wire: sent as they are when ready, dot-stuffed when not."""

from __future__ import annotations

import pytest

from newsletter.email.render import MessageTemplate, Recipient, RenderedEmail, slot
from newsletter.sending.transport import SMTPTransport
from tests.conftest import SMTP_PORT, Mailbox

TEXT = "Bom dia {greeting}\n\nA ponte reabre em Macau.\n{link}\n"
HTML = "<p>Bom dia {greeting}</p>\n<p>A ponte reabre em Macau.</p>\n<p>{link}</p>\n"


def template(text: str = TEXT, html: str = HTML) -> MessageTemplate:
    slots = {"greeting": slot("greeting"), "link": slot("link")}
    return MessageTemplate(
        RenderedEmail("Macau", text.format(**slots), html.format(**slots)),
        from_name="Plataforma",
        from_address="news@plataforma.test",
        headers=[("List-Unsubscribe", f"<{slot('link')}>")],
    )


def reader(greeting: str = "Ana,", link: str = "https://news.test/u/1") -> Recipient:
    return Recipient(
        address="ana@example.com",
        name="Ana",
        envelope_from="bounces@plataforma.test",
        message_id="<d1.abc@plataforma.test>",
        values={"greeting": greeting, "link": link},
    )


def send(mailbox: Mailbox, data: bytes, *, wire_ready: bool) -> bytes:
    with SMTPTransport(f"smtp://127.0.0.1:{SMTP_PORT}") as smtp:
        smtp.send(
            envelope_from="bounces@plataforma.test",
            recipient="ana@example.com",
            data=data,
            wire_ready=wire_ready,
        )
    (received,) = mailbox.wait_for("ana@example.com")
    return received.data


def test_a_message_ready_for_the_wire_arrives_byte_for_byte(mailbox: Mailbox) -> None:
    message = template().fill(reader())
    assert message.wire_ready
    assert send(mailbox, message.data, wire_ready=True) == message.data


@pytest.mark.parametrize(
    ("text", "greeting", "link"),
    [
        # A line of the article's that starts with a dot, in the lines filled once.
        (TEXT + ".net é o domínio\n.\n", "Ana,", "https://news.test/u/1"),
        # A reader's own value that puts a dot at the start of a line.
        ("{link}\n" + TEXT, "Ana,", ".https://news.test/u/1"),
        # A long value: quoted-printable breaks it, and the next line starts with a dot.
        (TEXT, "Ana" + "a" * 64 + ".dot", "https://news.test/u/1"),
        # A bare CR, which quoted-printable passes as it is, before a dot.
        (TEXT, "Ana,\r.", "https://news.test/u/1"),
    ],
)
def test_a_line_that_starts_with_a_dot_is_stuffed_on_the_wire_and_arrives_whole(
    mailbox: Mailbox, text: str, greeting: str, link: str
) -> None:
    message = template(text=text).fill(reader(greeting, link))
    assert b"\r\n." in message.data or b"\r." in message.data
    assert not message.wire_ready
    # Sent as it is, the relay would take each leading dot for a stuffed one and drop it.
    assert send(mailbox, message.data, wire_ready=message.wire_ready) == message.data
