"""Confirming a send on the dashboard: whom it reaches, nothing before the confirmation,
and the confirmed digest sent through a real worker; upcoming sends everywhere they show."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Delivery, Digest, DigestState, Subscriber, SubscriberStatus
from newsletter.digests import schedules
from newsletter.subscribers import store, suppressions
from newsletter.web.admin import auth
from tests.conftest import ROOT, Mailbox
from tests.factories import add_article, add_reader

MAY_BE_MAILED = {
    "ana@example.com": "en",
    "bo@example.com": "en",
    "rita@example.com": "pt",
    "li@example.com": "zh",
}


@pytest.fixture
def client(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from newsletter.web.app import create_app

    fast = get_settings().model_copy(update={"admin_signin_delay_seconds": 0.01})
    monkeypatch.setattr(auth, "get_settings", lambda: fast)
    with TestClient(create_app(), base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def csrf(client: TestClient) -> str:
    """Sign the client in; the session's CSRF token."""
    login_csrf = _csrf_of(client.get("/admin/login").text)
    response = client.post(
        "/admin/login",
        data={"token": get_settings().admin_token, "csrf_token": login_csrf, "next": "/admin"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return _csrf_of(client.get("/admin/digests").text)


def _csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def words(html: str) -> str:
    """A page's text as a person reads it: tags dropped, spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def readers_some_of_whom_may_not_be_mailed() -> None:
    for email, language in MAY_BE_MAILED.items():
        add_reader(email, language=language)
    add_reader("pending@example.com", confirmed=False)
    left = add_reader("left@example.com", language="pt")
    bounced = add_reader("bounced@example.com")
    add_reader("suppressed@example.com", language="zh")
    with db.session_scope() as session:
        store.unsubscribe(session, subscriber_id=left, source="test")
        reader = session.get(Subscriber, bounced)
        assert reader is not None
        reader.status = SubscriberStatus.BOUNCED
        suppressions.add(session, email="suppressed@example.com")


def test_the_confirmation_counts_who_may_be_mailed_and_only_the_confirmed_send_goes(
    client: TestClient, csrf: str, mailbox: Mailbox, worker: subprocess.Popen[bytes]
) -> None:
    readers_some_of_whom_may_not_be_mailed()
    add_article("Ponte reabre em Macau")
    created = client.post(
        "/admin/digests",
        data={"csrf_token": csrf, "newsletter": "daily", "window": "last"},
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    digest_id = int(created.headers["location"].rsplit("/", 1)[1])

    asked = client.get(f"/admin/digests/{digest_id}/confirm", params={"send": "now"})
    assert asked.status_code == 200
    assert (
        "This digest will reach 4 readers of Daily digest: en 2 · pt-PT 1 · zh-Hans 1 — send now?"
        in words(asked.text)
    )
    assert "1 so far" in words(asked.text)  # the window's articles
    assert "Send to 4 readers" in asked.text

    # Neither the draft nor the confirmation page mailed anyone, even given the time to.
    time.sleep(1.5)
    assert mailbox.messages == []
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        made = session.get(Digest, digest_id)
        assert made is not None and made.state == DigestState.DRAFT

    sent = client.post(
        f"/admin/digests/{digest_id}/schedule",
        data={"csrf_token": csrf, "send": "now", "send_at": ""},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text
    for email in MAY_BE_MAILED:
        mailbox.wait_for(email, timeout=30)
    mailbox.wait_until(lambda: len(mailbox.messages) >= len(MAY_BE_MAILED))
    for email in ("pending@", "left@", "bounced@", "suppressed@"):
        assert not mailbox.to(email + "example.com"), email
    with db.session_scope() as session:
        made = session.get(Digest, digest_id)
        assert made is not None and made.state in (DigestState.SENDING, DigestState.SENT)


def test_an_empty_digest_says_nothing_to_send_and_why(client: TestClient, csrf: str) -> None:
    with db.session_scope() as session:
        newsletter_id = schedules.newsletter_store.get_by_slug(session, "daily").id
        made = Digest(newsletter_id=newsletter_id, state=DigestState.EMPTY)
        made.note = "No article was published since the last digest."
        session.add(made)
        session.flush()
        digest_id = made.id
    page = client.get(f"/admin/digests/{digest_id}").text
    assert "Nothing to send: No article was published since the last digest." in words(page)
    assert "no deliveries yet" not in page
    assert '<strong class="progress-percent"></strong>' in page  # no "0%"
    progress = client.get(f"/admin/digests/{digest_id}/progress").json()
    assert progress["progress"]["percent"] == ""
    assert progress["progress"]["text"].startswith("Nothing to send: No article")
    assert progress["banner"] == progress["progress"]["text"]


def test_the_next_recurring_run_shows_on_the_dashboard_the_list_and_status(
    client: TestClient, csrf: str, clean_db: str, redis_broker: str
) -> None:
    with db.session_scope() as session:
        schedules.set_schedule(session, slug="daily", cron="0 7 * * 1", time_zone="Europe/Lisbon")
    for path in ("/admin", "/admin/digests"):
        page = words(client.get(path).text)
        assert re.search(
            r"next run of daily: \d{4}-\d\d-\d\d 07:00 Europe/Lisbon \(UTC\+[01]\)", page
        ), path
        assert "07:00 on Monday" in page, path

    env = {**os.environ, "NEWSLETTER_DATABASE_URL": clean_db}
    command = [sys.executable, "-m", "newsletter", "status", "--timeout", "0.2"]
    shown = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "Scheduled (1)" in shown.stdout
    assert re.search(r"  next run of daily: \S+ 07:00 Europe/Lisbon", shown.stdout), shown.stdout
    as_json = subprocess.run(
        [*command, "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    [upcoming] = json.loads(as_json.stdout)["scheduled"]
    assert upcoming["kind"] == "recurring" and upcoming["newsletter"] == "daily"
    assert upcoming["id"] is None and upcoming["scheduled_for"]


def test_upcoming_sends_are_scheduled_digests_and_next_runs_soonest_first(clean_db: str) -> None:
    from datetime import UTC, datetime

    from newsletter.digests import lifecycle, upcoming

    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)  # a Friday
    with db.session_scope() as session:
        schedules.set_schedule(session, slug="daily", cron="0 7 * * 1", time_zone="Europe/Lisbon")
        later = lifecycle.create_digest(
            session, newsletter_slug="daily", send_at=datetime(2026, 12, 9, tzinfo=UTC), now=now
        )
        sooner = lifecycle.create_digest(
            session, newsletter_slug="daily", send_at=datetime(2026, 12, 5, tzinfo=UTC), now=now
        )
        lifecycle.create_digest(session, newsletter_slug="daily", draft=True, now=now)
        shown = upcoming.upcoming_sends(session, now=now)
        assert [(send.kind, send.digest_id) for send in shown] == [
            ("digest", sooner.id),
            ("recurring", None),
            ("digest", later.id),
        ]
        assert shown[1].words == "next run of daily: 2026-12-07 07:00 Europe/Lisbon (UTC+0)"
