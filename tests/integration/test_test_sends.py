"""Test sends: a digest as it stands, marked [TEST], to the editor's addresses through a real
worker and SMTP; never to a reader, never a delivery, never to a suppressed address, and
its links act for nobody. Through the API, the CLI and the dashboard."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Delivery, Digest, DigestState, Subscriber, TestSend
from newsletter.subscribers import suppressions
from newsletter.web.admin import auth
from tests.conftest import Mailbox
from tests.factories import add_article, add_reader, run_cli

EDITOR = "editor@example.org"


def readers_in_three_languages() -> None:
    add_article("Macau reopens the bridge", topics=["macau"])
    add_article("Macau reabre a ponte", language="pt", topics=["macau"])
    add_article("澳门大桥重新开放", language="zh", topics=["macau"])
    add_reader("rita@example.com", language="pt", name="Rita")
    add_reader("li@example.com", language="zh")
    add_reader("ana@example.com", language="en")


def deliveries() -> int:
    with db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Delivery)) or 0)


def wait_for_test(api: TestClient, digest_id: int) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        latest = api.get(f"/api/digests/{digest_id}/tests").json()[0]
        if latest["status"] != "queued":
            return dict(latest)
        time.sleep(0.2)
    raise AssertionError("the test send never finished")


def test_a_test_send_reaches_the_editor_in_every_language_and_no_reader(
    api: TestClient, mailbox: Mailbox, worker: subprocess.Popen[bytes]
) -> None:
    readers_in_three_languages()
    with db.session_scope() as session:
        suppressions.add(session, email="gone@example.org")
    digest_id = api.post(
        "/api/digests",
        json={"newsletter": "daily", "draft": True, "intro": {"pt": "Nota da redação."}},
    ).json()["id"]

    asked = api.post(f"/api/digests/{digest_id}/test", json={"to": [EDITOR, "gone@example.org"]})
    assert asked.status_code == 202, asked.text
    assert [r["outcome"] for r in asked.json()["recipients"]] == ["queued", "refused"]
    got = mailbox.wait_for(EDITOR, count=3)
    subjects = sorted(str(m.message["Subject"]) for m in got)
    assert all(s.startswith("[TEST] ") for s in subjects), subjects
    # The Portuguese and the Chinese copies lead with their own language's story.
    assert any(s.startswith("[TEST] Macau reabre a ponte") for s in subjects), subjects
    assert any(s.startswith("[TEST] 澳门大桥重新开放") for s in subjects), subjects
    portuguese = next(m.message for m in got if "ponte" in str(m.message["Subject"]))
    body = portuguese.get_body(preferencelist=("plain",))
    assert body is not None
    text = str(body.get_content())
    assert "Nota da redação." in text and "Um teste deste resumo" in text
    assert portuguese["List-Unsubscribe"] is None

    final = wait_for_test(api, digest_id)
    assert final["status"] == "partly"
    assert [(r["email"], r["outcome"]) for r in final["recipients"]] == [  # type: ignore[union-attr]
        (EDITOR, "sent"),
        ("gone@example.org", "refused"),
    ]
    time.sleep(1)  # give a wrongly queued reader's copy the time to arrive
    assert not mailbox.to("gone@example.org")
    for reader in ("rita@example.com", "li@example.com", "ana@example.com"):
        assert not mailbox.to(reader), reader
    assert deliveries() == 0
    status = api.get(f"/api/digests/{digest_id}").json()
    assert status["state"] == DigestState.DRAFT and status["counts"]["total"] == 0


def test_a_copy_as_a_reader_gets_links_that_act_for_nobody(
    api: TestClient, mailbox: Mailbox, worker: subprocess.Popen[bytes]
) -> None:
    readers_in_three_languages()
    digest_id = api.post("/api/digests", json={"newsletter": "daily", "draft": True}).json()["id"]
    asked = api.post(
        f"/api/digests/{digest_id}/test", json={"to": [EDITOR], "as": "rita@example.com"}
    )
    assert asked.status_code == 202, asked.text
    assert asked.json()["as_reader"] != "rita@example.com"  # kept masked
    (copy,) = mailbox.wait_for(EDITOR)
    assert copy.message["Subject"].startswith("[TEST] Macau reabre a ponte")
    assert copy.mail_from == get_settings().from_address  # a bounce marks no reader
    html = copy.message.get_body(preferencelist=("html",))
    assert html is not None
    content = str(html.get_content())
    assert "Olá Rita," in content
    links = set(re.findall(r'href="([^"]+)"', content))
    assert not any("/unsubscribe/" in link or "/preferences/" in link for link in links), links
    inert = next(link for link in links if link.endswith("/test-link"))
    page = api.get(inert.replace(get_settings().base_url, ""))
    assert page.status_code == 200 and "test email" in page.text
    with db.session_scope() as session:
        rita = session.scalar(select(Subscriber).where(Subscriber.email == "rita@example.com"))
        assert rita is not None
        assert [s.status for s in rita.subscriptions] == ["subscribed"]


def test_test_send_refusals_are_said_in_words_and_record_nothing(api: TestClient) -> None:
    readers_in_three_languages()
    digest_id = api.post("/api/digests", json={"newsletter": "daily", "draft": True}).json()["id"]
    for body, status, said in [
        ({"to": []}, 422, "Say where the test goes"),
        ({"to": ["not-an-address"]}, 422, "'not-an-address'"),
        ({"to": [f"e{n}@example.org" for n in range(21)]}, 422, "at most 20"),
        ({"to": [EDITOR], "language": "fr"}, 422, "language"),
        ({"to": [EDITOR], "as": "nobody@example.com"}, 404, ""),
        ({"to": [EDITOR], "as": "rita@example.com", "language": "pt"}, 422, "not both"),
        ({"to": [EDITOR], "as": " "}, 422, "Name the reader"),
    ]:
        response = api.post(f"/api/digests/{digest_id}/test", json=body)
        assert response.status_code == status, (body, response.text)
        assert said in response.text, (body, response.text)
    assert api.post("/api/digests/999999/test", json={"to": [EDITOR]}).status_code == 404
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TestSend)) == 0


def test_the_cli_tests_the_next_digest_and_waits_for_the_outcome(
    clean_db: str, mailbox: Mailbox, worker: subprocess.Popen[bytes]
) -> None:
    readers_in_three_languages()
    sent = run_cli(
        "digest",
        "test",
        "--newsletter",
        "daily",
        "--language",
        "zh",
        database_url=clean_db,
        env={"NEWSLETTER_TEST_RECIPIENTS": f"{EDITOR}, desk@example.org"},
    )
    assert sent.returncode == 0, sent.stderr
    assert "subject: [TEST] 澳门大桥重新开放" in sent.stdout, sent.stdout
    assert f"{EDITOR}: sent" in sent.stdout and "desk@example.org: sent" in sent.stdout
    assert mailbox.wait_for("desk@example.org")[0].message["Subject"].startswith("[TEST]")

    nowhere = run_cli("digest", "test", "--newsletter", "daily", database_url=clean_db)
    assert nowhere.returncode == 1 and "Say where the test goes" in nowhere.stderr
    both = run_cli("digest", "test", "1", "--newsletter", "daily", database_url=clean_db)
    assert both.returncode == 1 and "not both" in both.stderr
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TestSend)) == 1
        assert session.scalar(select(func.count()).select_from(Digest)) == 0
    assert deliveries() == 0


def test_the_dashboard_sends_a_test_and_lists_what_came_of_it(
    clean_db: str,
    monkeypatch: pytest.MonkeyPatch,
    mailbox: Mailbox,
    worker: subprocess.Popen[bytes],
) -> None:
    from newsletter.web.app import create_app

    readers_in_three_languages()
    fast = get_settings().model_copy(
        update={"admin_signin_delay_seconds": 0.01, "test_recipients": EDITOR}
    )
    monkeypatch.setattr(auth, "get_settings", lambda: fast)
    from newsletter.web.admin import digests as admin_digests

    monkeypatch.setattr(admin_digests, "get_settings", lambda: fast)
    with TestClient(create_app(), base_url="http://testserver") as client:
        login = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/login").text)
        assert login
        client.post(
            "/admin/login",
            data={"token": fast.admin_token, "csrf_token": login.group(1), "next": "/admin"},
        )
        created = client.post(
            "/admin/digests",
            data={
                "csrf_token": _csrf(client.get("/admin/digests/new").text),
                "newsletter": "daily",
                "window": "last",
            },
            follow_redirects=False,
        )
        digest_id = int(created.headers["location"].rsplit("/", 1)[1])
        page = client.get(f"/admin/digests/{digest_id}").text
        assert f'value="{EDITOR}"' in page  # the seed list, ready
        asked = client.post(
            f"/admin/digests/{digest_id}/test",
            data={"csrf_token": _csrf(page), "to": EDITOR, "which": "en"},
            follow_redirects=False,
        )
        assert asked.status_code == 303, asked.text
        assert mailbox.wait_for(EDITOR)[0].message["Subject"] == "[TEST] Macau reopens the bridge"
        deadline = time.monotonic() + 20
        while f"{EDITOR}: sent" not in client.get(f"/admin/digests/{digest_id}").text:
            assert time.monotonic() < deadline, "the test send never showed as sent"
            time.sleep(0.2)
        bad = client.post(
            f"/admin/digests/{digest_id}/test",
            data={"csrf_token": _csrf(page), "to": "nope", "which": "all"},
        )
        assert bad.status_code == 422 and "&#39;nope&#39;" in bad.text
    assert deliveries() == 0


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)
