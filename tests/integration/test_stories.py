"""One story, several languages: through a real worker on Redis to a real SMTP server.

A story imported in pt and en reaches a Portuguese reader once, in Portuguese, and is not
offered to them again in English; an English reader who did not have it gets it in English.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.articles import store as article_store
from newsletter.core import db
from newsletter.core.models import DigestState
from newsletter.digests import lifecycle, reports
from newsletter.tasks import jobs as tasks
from tests.conftest import Mailbox
from tests.factories import add_reader

FINAL = {DigestState.SENT, DigestState.EMPTY, DigestState.CANCELLED, DigestState.FAILED}


@pytest.fixture
def world(clean_db: str, worker: subprocess.Popen[bytes], mailbox: Mailbox) -> Mailbox:
    return mailbox


def import_markdown(folder: Path, name: str, front_matter: dict[str, str], body: str) -> None:
    folder.mkdir(exist_ok=True)
    lines = [f"{key}: {value!r}" for key, value in front_matter.items()]
    (folder / name).write_text("---\n" + "\n".join(lines) + "\n---\n" + body, encoding="utf-8")
    with db.session_scope() as session:
        report = article_store.import_paths(session, [folder / name])
    assert report.imported == [str(folder / name)], report


def send_digest() -> None:
    with db.session_scope() as session:
        digest_id = lifecycle.create_digest(session, newsletter_slug="daily").id
    tasks.tick.delay()
    deadline = time.monotonic() + 60
    while True:
        with db.session_scope() as session:
            state = reports.digest_status(session, digest_id)["state"]
        if state in FINAL:
            assert state == DigestState.SENT
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"digest {digest_id} still {state}")
        time.sleep(0.2)


def text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_a_story_in_pt_and_en_reaches_a_pt_reader_once_in_pt(
    world: Mailbox, tmp_path: Path
) -> None:
    maria = "maria@example.com"
    ana = "ana@example.com"
    add_reader(maria, language="pt")
    add_reader(ana, language="en")
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    import_markdown(
        tmp_path / "pt",
        "ponte.md",
        {"title": "Macau reabre a ponte", "language": "pt", "story": "macau-bridge"},
        "A ponte reabriu hoje às 8h, depois de três dias fechada.\n",
    )
    import_markdown(
        tmp_path / "pt",
        "eleicoes.md",
        {"title": "Eleições em Macau", "language": "pt", "published_at": an_hour_ago},
        "As eleições decorreram com normalidade.\n",
    )

    # The first digest: Maria has the Portuguese version; the story has no English one yet.
    send_digest()
    (first,) = world.wait_for(maria)
    assert "Macau reabre a ponte" in text(first.message)
    assert world.to(ana) == []  # nothing in English, the newsletter's language

    # The English version is published later, with another English story.
    import_markdown(
        tmp_path / "en",
        "bridge.md",
        {"title": "Macau reopens the bridge", "language": "en", "story": "macau-bridge"},
        "The bridge reopened at 8 this morning after three days closed.\n",
    )
    import_markdown(
        tmp_path / "en",
        "trams.md",
        {"title": "Lisbon trams run late", "language": "en"},
        "Trams ran late all morning in Lisbon.\n",
    )
    send_digest()

    # Maria's second digest has the new story (no Portuguese version: in English), never
    # the bridge again, in any language.
    _, second = world.wait_for(maria, count=2)
    assert "Lisbon trams run late" in text(second.message)
    assert "bridge" not in text(second.message) and "ponte" not in text(second.message)
    (for_ana,) = world.wait_for(ana)
    assert "Macau reopens the bridge" in text(for_ana.message)
    assert "Lisbon trams run late" in text(for_ana.message)
    assert "Macau reabre a ponte" not in text(for_ana.message)
    assert len(world.to(maria)) == 2
