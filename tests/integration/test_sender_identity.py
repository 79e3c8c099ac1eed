"""Who the emails say they are from: the publisher's postal address in every footer, a
newsletter's own sender name and Reply-To; and the one rule for welcoming readers an
editor adds as already confirmed (by hand or from a file)."""

from __future__ import annotations

import subprocess
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.digests import render
from newsletter.email.render import OutgoingMessage
from newsletter.subscribers import notices
from newsletter.subscribers.newsletters import get_by_slug
from tests.conftest import Mailbox
from tests.factories import add_article, add_reader, run_cli

POSTAL = "Rua do Jornal 10, 1200-001 Lisboa, Portugal"


def parsed(message: OutgoingMessage) -> EmailMessage:
    found = message_from_bytes(message.data, policy=policy.default)
    assert isinstance(found, EmailMessage)
    return found


def parts(message: OutgoingMessage) -> tuple[str, str]:
    email = parsed(message)
    text = email.get_body(preferencelist=("plain",))
    html = email.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def test_every_email_carries_the_postal_address_and_the_confirmation_says_why(
    clean_db: str,
) -> None:
    settings = get_settings().model_copy(update={"postal_address": POSTAL})
    pending = add_reader("nova@example.com", confirmed=False, language="pt")
    reader = add_reader("ana@example.com")
    add_article("Macau reopens the bridge")
    with db.session_scope() as session:
        newsletter_id = get_by_slug(session, "daily").id
        made = {
            "confirmation": notices.confirmation_message(
                session, subscriber_id=pending, newsletter_ids=None, settings=settings
            ),
            "welcome": notices.welcome_message(
                session, subscriber_id=reader, newsletter_ids=[newsletter_id], settings=settings
            ),
            "digest": render.preview(session, newsletter_slug="daily", settings=settings).message,
        }
    for kind, message in made.items():
        assert message is not None, kind
        text, html = parts(message)
        assert f"Plataforma · {POSTAL}" in text, kind
        assert POSTAL in html, kind
    text, _ = parts(made["confirmation"])  # type: ignore[arg-type]
    assert "foi indicado na página de subscrição" in text  # its footer, in the reader's language
    # Without an address (development), the footer has none.
    with db.session_scope() as session:
        plain = render.preview(session, newsletter_slug="daily", settings=get_settings())
    assert POSTAL not in parts(plain.message)[0]


def test_a_newsletter_has_its_own_sender_name_and_reply_to(clean_db: str) -> None:
    add_reader("ana@example.com")
    add_article("Macau reopens the bridge")
    set_it = run_cli(
        "newsletters",
        "set",
        "daily",
        "--from-name",
        "Resumo da Plataforma",
        "--reply-to",
        "redacao@example.com",
        database_url=clean_db,
    )
    assert set_it.returncode == 0, set_it.stderr
    assert "replies to redacao@example.com" in set_it.stdout
    with db.session_scope() as session:
        message = parsed(
            render.preview(session, newsletter_slug="daily", settings=get_settings()).message
        )
    assert message["From"] == f"Resumo da Plataforma <{get_settings().from_address}>"
    assert message["Reply-To"] == "redacao@example.com"

    for bad in ("not an address", "x@example.com\r\nBcc: everyone@example.com"):
        refused = run_cli("newsletters", "set", "daily", "--reply-to", bad, database_url=clean_db)
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, bad
    with db.session_scope() as session:
        daily = get_by_slug(session, "daily")
        assert (daily.from_name, daily.reply_to) == ("Resumo da Plataforma", "redacao@example.com")

    reset = run_cli(
        "newsletters", "set", "daily", "--from-name", "", "--reply-to", "", database_url=clean_db
    )
    assert reset.returncode == 0, reset.stderr
    with db.session_scope() as session:
        message = parsed(
            render.preview(session, newsletter_slug="daily", settings=get_settings()).message
        )
    assert message["From"] == f"Plataforma <{get_settings().from_address}>"
    assert message["Reply-To"] is None


def test_readers_added_as_confirmed_are_welcomed_only_when_asked(
    clean_db: str, mailbox: Mailbox, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    quiet = run_cli("subscribers", "add", "quiet@example.com", "--confirmed", database_url=clean_db)
    assert quiet.returncode == 0, quiet.stderr
    welcomed = run_cli(
        "subscribers", "add", "hello@example.com", "--confirmed", "--welcome", database_url=clean_db
    )
    assert welcomed.returncode == 0 and "welcome email queued" in welcomed.stdout
    csv = tmp_path / "readers.csv"
    csv.write_text("email,confirmed\nfile.quiet@example.com,yes\n")
    assert run_cli("subscribers", "import", str(csv), database_url=clean_db).returncode == 0
    loud = tmp_path / "more.csv"
    loud.write_text("email,confirmed\nfile.hello@example.com,yes\n")
    imported = run_cli("subscribers", "import", str(loud), "--welcome", database_url=clean_db)
    assert imported.returncode == 0, imported.stderr
    assert "Welcome" in str(mailbox.wait_for("hello@example.com")[0].message["Subject"])
    assert "Welcome" in str(mailbox.wait_for("file.hello@example.com")[0].message["Subject"])
    time.sleep(1)  # long enough for a wrongly queued welcome to arrive too
    assert not mailbox.to("quiet@example.com") and not mailbox.to("file.quiet@example.com")
