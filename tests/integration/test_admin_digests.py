"""The digests pages of the admin dashboard: list, create, follow, act on and preview digests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.core import db
from newsletter.core.clock import utcnow
from newsletter.core.config import get_settings
from newsletter.core.models import Delivery, DeliveryStatus, Digest, DigestState
from newsletter.digests import lifecycle, schedules
from newsletter.web.admin import auth
from newsletter.web.admin import digests as digest_pages
from newsletter.web.app import create_app
from tests.factories import add_article, add_reader
from tests.fakes import RecordingQueue

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def queued() -> RecordingQueue:
    """The jobs the pages queue, recorded instead of sent to a broker nobody reads here."""
    return RecordingQueue("tick", "send_batch")


@pytest.fixture
def client(
    clean_db: str, monkeypatch: pytest.MonkeyPatch, queued: RecordingQueue
) -> Iterator[TestClient]:
    fast = get_settings().model_copy(update={"admin_signin_delay_seconds": 0.01})
    monkeypatch.setattr(auth, "get_settings", lambda: fast)
    with TestClient(create_app(queue=queued), base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def csrf(client: TestClient) -> str:
    """Sign the client in; the session's CSRF token (from the sign-out form of a page)."""
    form = client.get("/admin/login")
    login_csrf = _csrf_of(form.text)
    response = client.post(
        "/admin/login",
        data={
            "token": get_settings().admin_token,
            "csrf_token": login_csrf,
            "next": "/admin/digests",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return _csrf_of(client.get("/admin/digests").text)


def _csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def article(title: str, *, hours_ago: float = 1, language: str = "en") -> int:
    return add_article(title, hours_ago=hours_ago, language=language)


def digest(
    *, state: str = DigestState.SCHEDULED, subject: str | None = None, **statuses: int
) -> int:
    """A digest in this state, with this many deliveries in each status (to fresh readers)."""
    with db.session_scope() as session:
        made = lifecycle.create_digest(session, newsletter_slug="daily", subject=subject)
        made.state = state
        digest_id = made.id
    number = 0
    for status, count in statuses.items():
        for _ in range(count):
            number += 1
            reader = add_reader(f"r{digest_id}-{number}@example.com")
            with db.session_scope() as session:
                session.add(Delivery(digest_id=digest_id, subscriber_id=reader, status=status))
    return digest_id


def state_of(digest_id: int) -> str:
    with db.session_scope() as session:
        found = session.get(Digest, digest_id)
        assert found is not None
        return found.state


def digest_count() -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Digest)) or 0


# --- signing in ---------------------------------------------------------------------------


def test_the_pages_need_a_signed_in_editor(client: TestClient) -> None:
    made = digest()
    for path in (
        "/admin/digests",
        "/admin/digests/new",
        f"/admin/digests/{made}",
        f"/admin/digests/{made}/preview",
        f"/admin/digests/{made}/preview/email",
    ):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login?next="), path
    progress = client.get(f"/admin/digests/{made}/progress", headers={"Accept": "application/json"})
    assert progress.status_code == 401
    created = client.post("/admin/digests", data={"newsletter": "daily"}, follow_redirects=False)
    assert created.status_code == 303 and created.headers["location"].startswith("/admin/login")
    cancelled = client.post(f"/admin/digests/{made}/cancel", follow_redirects=False)
    assert cancelled.status_code == 303
    assert digest_count() == 1 and state_of(made) == DigestState.SCHEDULED


# --- the list and progress ----------------------------------------------------------------


def test_the_list_shows_digests_newest_first_with_their_progress(
    client: TestClient, csrf: str
) -> None:
    older = digest(state=DigestState.SENT, subject="Older digest", sent=3)
    newer = digest(
        state=DigestState.SENDING,
        subject="Newer <b>digest</b>",
        sent=2,
        bounced=1,
        failed=1,
        queued=4,
    )
    page = client.get("/admin/digests")
    assert page.status_code == 200
    html = page.text
    assert html.index(f">#{newer}</a>") < html.index(f">#{older}</a>")
    assert "Newer &lt;b&gt;digest&lt;/b&gt;" in html and "<b>digest" not in html
    assert "2 of 8 sent · 1 bounced · 1 failed" in html
    assert "3 of 3 sent · 0 bounced · 0 failed" in html
    assert 'class="state state-sending"' in html and 'class="state state-sent"' in html
    assert 'style="width: 25.0%"' in html  # 2 of 8 sent
    assert '<script src="/admin/static/progress.js"' in html
    # Only the digest still being sent is polled.
    assert f'data-digest="{newer}" data-state="sending" data-live' in html
    assert f'data-digest="{older}" data-state="sent" >' in html
    assert client.get("/admin/static/progress.js").status_code == 200


def test_the_list_is_paged(client: TestClient, csrf: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest_pages, "PAGE_SIZE", 2)
    ids = [digest(state=DigestState.SENT, subject=f"Digest number {n}") for n in range(3)]
    first = client.get("/admin/digests").text
    assert "Digest number 2" in first and "Digest number 1" in first
    assert "Digest number 0" not in first and "/admin/digests?page=2" in first
    second = client.get("/admin/digests?page=2").text
    assert "Digest number 0" in second and "Digest number 2" not in second
    assert f">#{ids[0]}</a>" in second
    assert client.get("/admin/digests?page=0").status_code == 422
    assert client.get("/admin/digests?page=9").status_code == 200


def test_progress_answers_json_for_the_bars(client: TestClient, csrf: str) -> None:
    made = digest(state=DigestState.SENDING, sent=3, queued=1)
    answer = client.get(f"/admin/digests/{made}/progress").json()
    assert answer["state"] == "sending" and answer["final"] is False
    assert answer["counts"]["sent"] == 3 and answer["counts"]["total"] == 4
    assert answer["progress"]["sent"] == 75.0 and answer["progress"]["done"] == 75
    assert answer["poll_ms"] == digest_pages.FAST_POLL_MS
    finished = digest(state=DigestState.SENT, sent=2)
    done = client.get(f"/admin/digests/{finished}/progress").json()
    assert done["final"] is True and done["progress"]["done"] == 100
    assert done["progress"]["text"] == "2 of 2 sent · 0 bounced · 0 failed"
    missing = client.get("/admin/digests/999999/progress")
    assert missing.status_code == 404


# --- creating -----------------------------------------------------------------------------


def draft(client: TestClient, csrf: str, **fields: str) -> int:
    """A draft made through the "New digest" form; its id."""
    data = {"csrf_token": csrf, "newsletter": "daily", "window": "last", **fields}
    response = client.post("/admin/digests", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/admin/digests/(\d+)", response.headers["location"])
    assert match
    return int(match.group(1))


def confirm(client: TestClient, csrf: str, digest_id: int, **fields: str) -> Any:
    """The confirmation's POST, as its [Send]/[Schedule] button makes it."""
    data = {"csrf_token": csrf, "send": "now", "send_at": "", **fields}
    return client.post(f"/admin/digests/{digest_id}/schedule", data=data, follow_redirects=False)


def test_a_new_digest_is_a_draft_and_goes_out_only_once_confirmed(
    client: TestClient, csrf: str, queued: dict[str, list[Any]]
) -> None:
    form = client.get("/admin/digests/new")
    assert form.status_code == 200
    assert 'name="csrf_token"' in form.text and '<option value="daily"' in form.text
    assert 'name="send"' not in form.text  # sending is the draft page's, after a confirmation
    for n in range(3):
        add_reader(f"en{n}@example.com")
    add_reader("pt@example.com", language="pt")
    digest_id = draft(client, csrf)
    with db.session_scope() as session:
        made = session.get(Digest, digest_id)
        assert made is not None
        assert made.state == DigestState.DRAFT and made.since is None
        assert made.subject is None and made.scheduled_for is None
    assert queued["tick"] == []  # a draft starts nothing
    page = client.get(f"/admin/digests/{digest_id}").text
    assert f"Digest #{digest_id} saved as a draft" in page
    assert "Draft: it reaches nobody until you send it now or schedule it." in page
    assert "being sent now" not in page and "no deliveries yet" not in page
    assert '<strong class="progress-percent"></strong> <span class="progress-text">not started' in (
        page
    )
    assert "since the last digest" in page
    assert f'action="/admin/digests/{digest_id}/confirm"' in page and "Send now…" in page
    assert "Schedule…" in page and "Europe/Lisbon (UTC" in page

    asked = client.get(f"/admin/digests/{digest_id}/confirm", params={"send": "now"})
    assert asked.status_code == 200
    text = re.sub(r"<[^>]+>", "", asked.text)
    assert "This digest will reach 4 readers of Daily digest: en 3 · pt-PT 1 — send now?" in (
        " ".join(text.split())
    )
    assert "Send to 4 readers" in asked.text and "Back to the draft" in asked.text
    assert state_of(digest_id) == DigestState.DRAFT and queued["tick"] == []

    before = utcnow()
    sent = confirm(client, csrf, digest_id)
    assert sent.status_code == 303 and sent.headers["location"] == f"/admin/digests/{digest_id}"
    with db.session_scope() as session:
        made = session.get(Digest, digest_id)
        assert made is not None and made.state == DigestState.SCHEDULED
        assert made.scheduled_for is not None and made.scheduled_for >= before
    assert queued["tick"] == [()]  # started at once, not at the next beat
    page = client.get(sent.headers["location"]).text
    assert f"Digest #{digest_id} is on its way" in page
    assert "Scheduled for " in page and "Send now…" not in page
    # Confirmed once is enough: a second POST finds no draft, and says so.
    again = confirm(client, csrf, digest_id)
    assert again.status_code == 409 and "only a draft can be sent or scheduled" in again.text


def test_a_digest_at_a_local_time_on_the_newsletters_clock(
    client: TestClient, csrf: str, queued: dict[str, list[Any]]
) -> None:
    with db.session_scope() as session:
        schedules.add_newsletter(session, slug="macau", name="Macau", time_zone="Asia/Macau")
    digest_id = draft(
        client,
        csrf,
        newsletter="macau",
        window="since",
        since="2026-01-10T08:00",
        subject="  Semana em Macau  ",
    )
    asked = client.get(
        f"/admin/digests/{digest_id}/confirm", params={"send": "at", "send_at": "2099-01-15T09:30"}
    )
    assert asked.status_code == 200
    assert "Schedule digest #" in asked.text
    assert "at 2099-01-15 09:30 Asia/Macau (UTC+8)" in asked.text
    # Nobody reads Macau: said plainly, and no button that would mail nobody silently.
    assert "this digest would reach nobody" in asked.text and "Schedule anyway" in asked.text
    assert "Send to" not in asked.text
    response = confirm(client, csrf, digest_id, send="at", send_at="2099-01-15T09:30")
    assert response.status_code == 303, response.text
    with db.session_scope() as session:
        made = session.scalars(select(Digest)).one()
        # Macau is UTC+8 all year.
        assert made.scheduled_for == datetime(2099, 1, 15, 1, 30, tzinfo=UTC)
        assert made.since == datetime(2026, 1, 10, 0, 0, tzinfo=UTC)
        assert made.subject == "Semana em Macau"
        assert made.newsletter.slug == "macau"
        assert made.state == DigestState.SCHEDULED
    page = client.get(response.headers["location"]).text
    assert "Scheduled for 2099-01-15 09:30 Asia/Macau (UTC+8)." in page
    assert "being sent now" not in page
    assert "Pause" in page and "Cancel digest" in page and "Resume" not in page


def test_sending_now_to_nobody_is_refused(
    client: TestClient, csrf: str, queued: dict[str, list[Any]]
) -> None:
    digest_id = draft(client, csrf)
    asked = client.get(f"/admin/digests/{digest_id}/confirm")
    assert "this digest would reach nobody" in asked.text and "Send to" not in asked.text
    refused = confirm(client, csrf, digest_id)
    assert refused.status_code == 409 and "nobody to send it to" in refused.text
    assert state_of(digest_id) == DigestState.DRAFT and queued["tick"] == []


@pytest.mark.parametrize(
    ("since", "send_at", "stored_since", "stored_send_at"),
    [
        # Without a zone: the newsletter's clock (Macau, UTC+8), as in the CLI and the API.
        (
            "2026-01-10 08:00",
            "2099-01-15 09:30:00",
            datetime(2026, 1, 10, 0, 0, tzinfo=UTC),
            datetime(2099, 1, 15, 1, 30, tzinfo=UTC),
        ),
        # With a zone or an offset: taken as given.
        (
            "2026-01-10T08:00Z",
            "2099-01-15T09:30-03:00",
            datetime(2026, 1, 10, 8, 0, tzinfo=UTC),
            datetime(2099, 1, 15, 12, 30, tzinfo=UTC),
        ),
    ],
)
def test_the_form_reads_a_time_as_every_front_end_does(
    client: TestClient,
    csrf: str,
    since: str,
    send_at: str,
    stored_since: datetime,
    stored_send_at: datetime,
) -> None:
    with db.session_scope() as session:
        schedules.add_newsletter(session, slug="macau", name="Macau", time_zone="Asia/Macau")
    digest_id = draft(client, csrf, newsletter="macau", window="since", since=since)
    response = confirm(client, csrf, digest_id, send="at", send_at=send_at)
    assert response.status_code == 303, response.text
    with db.session_scope() as session:
        made = session.scalars(select(Digest)).one()
        assert (made.since, made.scheduled_for) == (stored_since, stored_send_at)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"newsletter": "nope"}, "Choose one of the newsletters."),
        ({"window": "since", "since": ""}, "Give the start of the window"),
        ({"window": "since", "since": "2099-01-01T00:00"}, "cannot start in the future"),
        # The ends of the calendar overflow when moved to UTC (was a 500).
        ({"window": "since", "since": "0001-01-01T00:30"}, "between 1970 and 9000"),
        ({"subject": "x" * 301}, "too long"),
        ({"subject": "bad\x00subject"}, "subject"),
    ],
)
def test_invalid_input_shows_the_form_again_and_creates_nothing(
    client: TestClient,
    csrf: str,
    queued: dict[str, list[Any]],
    fields: dict[str, str],
    message: str,
) -> None:
    data = {"csrf_token": csrf, "newsletter": "daily", "window": "last", **fields}
    response = client.post("/admin/digests", data=data, follow_redirects=False)
    assert response.status_code == 422
    assert 'class="error"' in response.text and message in response.text
    assert "<h1>New digest</h1>" in response.text
    assert digest_count() == 0 and queued["tick"] == []


@pytest.mark.parametrize(
    ("send_at", "message"),
    [
        ("", "Give the sending time"),
        ("tomorrow at nine", "The sending time is not a date and time"),
        ("2001-01-01T10:00", "That sending time has passed"),
        # Lisbon's clocks went from 01:00 to 02:00 on 29 March 2099.
        ("2099-03-29T01:30", "does not exist in Europe/Lisbon"),
        ("9999-12-31T23:30", "between 1970 and 9000"),
    ],
)
def test_a_bad_sending_time_is_refused_at_both_steps_and_keeps_the_draft(
    client: TestClient, csrf: str, queued: dict[str, list[Any]], send_at: str, message: str
) -> None:
    digest_id = draft(client, csrf)
    asked = client.get(
        f"/admin/digests/{digest_id}/confirm", params={"send": "at", "send_at": send_at}
    )
    assert asked.status_code == 422 and message in asked.text
    refused = confirm(client, csrf, digest_id, send="at", send_at=send_at)
    assert refused.status_code == 422 and message in refused.text
    assert state_of(digest_id) == DigestState.DRAFT and queued["tick"] == []


def test_too_long_a_field_is_refused_without_a_500(client: TestClient, csrf: str) -> None:
    response = client.post(
        "/admin/digests",
        data={"csrf_token": csrf, "newsletter": "d" * 5000},
        follow_redirects=False,
    )
    assert response.status_code == 422 and digest_count() == 0


# --- the digest's page and actions --------------------------------------------------------


def test_a_digest_page_shows_its_state_counts_and_errors(client: TestClient, csrf: str) -> None:
    made = digest(state=DigestState.SENDING, sent=1, queued=1)
    reader = add_reader("le.reader@example.com")
    with db.session_scope() as session:
        session.add(
            Delivery(
                digest_id=made,
                subscriber_id=reader,
                status=DeliveryStatus.FAILED,
                attempts=3,
                last_error="550 5.1.1 <le.reader@example.com>: no such user",
            )
        )
    other = digest(state=DigestState.SENDING)
    with db.session_scope() as session:
        session.add(
            Delivery(
                digest_id=other,
                subscriber_id=add_reader("other.reader@example.com"),
                status=DeliveryStatus.FAILED,
                last_error="421 trouble of another digest",
            )
        )
    page = client.get(f"/admin/digests/{made}")
    assert page.status_code == 200
    html = page.text
    assert f"Digest #{made}" in html and 'class="state state-sending"' in html
    assert "1 of 3 sent · 0 bounced · 1 failed" in html
    # Why, in words, with the reader it happened to (masked) a click away.
    assert "What happened" in html and "The mailbox does not exist (5.1.1)." in html
    assert f'href="/admin/subscribers/{reader}">le…@example.com' in html
    assert "le.reader@example.com" not in html  # masked, as everywhere operators look
    assert "trouble of another digest" not in html  # only this digest's errors
    assert "data-reload-on-change" in html
    assert html.count('name="csrf_token"') >= 3  # sign-out, pause, cancel
    assert f'action="/admin/digests/{made}/pause"' in html
    assert f'action="/admin/digests/{made}/cancel"' in html
    assert f'action="/admin/digests/{made}/resume"' not in html


def test_unknown_and_out_of_range_ids(client: TestClient, csrf: str) -> None:
    missing = client.get("/admin/digests/999999")
    assert missing.status_code == 404 and "There is no digest 999999." in missing.text
    assert client.get("/admin/digests/999999/preview").status_code == 404
    assert client.get("/admin/digests/999999/preview/email").status_code == 404
    action = client.post("/admin/digests/999999/cancel", data={"csrf_token": csrf})
    assert action.status_code == 404
    assert client.get("/admin/digests/99999999999").status_code == 422
    assert client.get("/admin/digests/0").status_code == 422
    assert client.post("/admin/digests/1/explode", data={"csrf_token": csrf}).status_code == 422


def test_pause_resume_and_cancel(
    client: TestClient, csrf: str, queued: dict[str, list[Any]]
) -> None:
    made = digest(state=DigestState.SENDING, sent=1, queued=2)
    paused = client.post(
        f"/admin/digests/{made}/pause", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert paused.status_code == 303 and paused.headers["location"] == f"/admin/digests/{made}"
    assert state_of(made) == DigestState.PAUSED
    page = client.get(f"/admin/digests/{made}").text
    assert f"Digest #{made} paused." in page
    assert f'action="/admin/digests/{made}/resume"' in page
    assert f'action="/admin/digests/{made}/pause"' not in page

    resumed = client.post(
        f"/admin/digests/{made}/resume", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert resumed.status_code == 303 and state_of(made) == DigestState.SENDING
    # The deliveries still queued are handed to the workers again.
    assert len(queued["send_batch"]) == 1
    assert queued["send_batch"][0][0] == made and len(queued["send_batch"][0][1]) == 2

    cancelled = client.post(
        f"/admin/digests/{made}/cancel", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert cancelled.status_code == 303 and state_of(made) == DigestState.CANCELLED
    page = client.get(f"/admin/digests/{made}").text
    assert "cancelled: nothing more of it will be sent" in page
    assert "data-live" not in page  # final: the bar is no longer polled
    assert "<button" in page and "Cancel digest" not in page and ">Pause<" not in page


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (DigestState.SENT, "cancel"),
        (DigestState.CANCELLED, "pause"),
        (DigestState.SCHEDULED, "resume"),
    ],
)
def test_an_action_the_state_does_not_allow_is_a_clear_409(
    client: TestClient, csrf: str, state: str, action: str
) -> None:
    made = digest(state=state)
    response = client.post(f"/admin/digests/{made}/{action}", data={"csrf_token": csrf})
    assert response.status_code == 409
    assert 'class="error"' in response.text and f"Digest {made} is {state}" in response.text
    assert state_of(made) == state


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_form_without_this_sessions_csrf_token_is_refused(
    client: TestClient, csrf: str, queued: dict[str, list[Any]], token: str | None
) -> None:
    made = digest(state=DigestState.SENDING, queued=1)
    extra = {} if token is None else {"csrf_token": token}
    for action in ("cancel", "pause"):
        response = client.post(f"/admin/digests/{made}/{action}", data=extra)
        assert response.status_code == 403 and "Form refused" in response.text
    assert state_of(made) == DigestState.SENDING
    created = client.post("/admin/digests", data={"newsletter": "daily", **extra})
    assert created.status_code == 403
    assert digest_count() == 1 and queued["tick"] == []
    waiting = digest(state=DigestState.DRAFT)
    add_reader("reader@example.com")
    sent = client.post(f"/admin/digests/{waiting}/schedule", data={"send": "now", **extra})
    assert sent.status_code == 403
    assert state_of(waiting) == DigestState.DRAFT and queued["tick"] == []


# --- preview ------------------------------------------------------------------------------


def test_the_preview_shows_the_readers_email_with_hostile_text_escaped(
    client: TestClient, csrf: str
) -> None:
    article("Ponte reabre em Macau")
    article(f"Hostile {HOSTILE} title")
    add_reader("ana@example.com", name=f"Ana {HOSTILE}")
    made = digest()
    page = client.get(f"/admin/digests/{made}/preview", params={"subscriber": "ana@example.com"})
    assert page.status_code == 200
    src = f"/admin/digests/{made}/preview/email?subscriber=ana%40example.com"
    assert f'<iframe class="preview" sandbox src="{src}"' in page.text
    assert "allow-scripts" not in page.text
    assert "<script>alert" not in page.text

    email = client.get(src)
    assert email.status_code == 200
    assert email.headers["content-type"].startswith("text/html")
    policy = email.headers["content-security-policy"]
    assert policy.startswith("sandbox;") and "script-src" not in policy
    html = email.text
    assert "Ana" in html and "Ponte reabre em Macau" in html and "Hostile" in html
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html


def test_the_preview_for_a_sample_reader_and_its_refusals(client: TestClient, csrf: str) -> None:
    made = digest(subject="Edição especial")
    nothing = client.get(f"/admin/digests/{made}/preview")
    assert nothing.status_code == 409 and "nothing to send" in nothing.text
    assert "<iframe" not in nothing.text

    article("Lusofonia em foco")
    sample = client.get(f"/admin/digests/{made}/preview")
    assert sample.status_code == 200 and "a sample reader" in sample.text
    assert "Edição especial" in sample.text
    email = client.get(f"/admin/digests/{made}/preview/email")
    assert email.status_code == 200 and "Lusofonia em foco" in email.text

    unknown = client.get(
        f"/admin/digests/{made}/preview", params={"subscriber": "nobody@example.com"}
    )
    assert unknown.status_code == 404 and "No subscriber with the address" in unknown.text
    invalid = client.get(f"/admin/digests/{made}/preview/email", params={"subscriber": "x@"})
    assert invalid.status_code == 422 and "not valid" in invalid.text
    assert (
        "<script"
        not in client.get(f"/admin/digests/{made}/preview", params={"subscriber": HOSTILE}).text
    )
