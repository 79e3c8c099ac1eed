"""The editor's desk: a draft shaped by its editor (a note and a subject per language,
stories pinned in order or left out) through the API, the CLI and the dashboard, then sent
by a real worker as shaped; and every refusal said in words, changing nothing."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.articles.store import set_hidden
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Delivery, Digest, DigestState
from newsletter.web.admin import auth
from tests.conftest import Mailbox
from tests.factories import add_article, add_reader, run_cli


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def stories() -> dict[str, int]:
    """A window of three stories on different topics, and one from last week."""
    return {
        "bridge": add_article("Macau reopens the bridge", topics=["macau"]),
        "ponte": add_article("Macau reabre a ponte", language="pt", topics=["macau"]),
        "derby": add_article("Benfica wins the derby", topics=["sport"]),
        "markets": add_article("Markets open higher", topics=["economy"]),
        "old": add_article("Last week's harbour story", hours_ago=24 * 7, topics=["macau"]),
    }


def test_an_editor_shapes_a_draft_through_the_api_and_readers_get_it_as_shaped(
    api: TestClient, mailbox: Mailbox, worker: subprocess.Popen[bytes]
) -> None:
    made = stories()
    with db.session_scope() as session:
        from newsletter.articles.store import set_story

        set_story(session, article_id=made["bridge"], story="macau-bridge")
        set_story(session, article_id=made["ponte"], story="macau-bridge")
    add_reader("rita@example.com", language="pt")
    add_reader("li@example.com", language="zh")
    add_reader("ana@example.com", language="en")

    created = api.post(
        "/api/digests",
        json={
            "newsletter": "daily",
            "draft": True,
            "intro": {"pt": "Bom dia! **Três** notícias.", "en": "Good morning from Macau."},
            "subjects": {"pt": "O resumo de hoje"},
            "pinned": [made["old"], made["bridge"]],
            "excluded": [made["markets"]],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    digest_id = body["id"]
    assert body["state"] == DigestState.DRAFT
    assert body["pinned"] == [made["old"], made["bridge"]]
    assert body["intro"]["pt"].startswith("Bom dia!")

    # Previewed as it stands, per language: the note of that language, else the newsletter's.
    preview = api.get(f"/api/digests/{digest_id}/preview", params={"language": "pt"})
    assert preview.status_code == 200, preview.text
    assert "<strong>Três</strong>" in preview.text
    assert unquote(preview.headers["X-Digest-Subject"]) == "O resumo de hoje"
    as_text = api.get(
        f"/api/digests/{digest_id}/preview", params={"language": "zh", "format": "text"}
    )
    assert "Good morning from Macau." in as_text.text

    edited = api.patch(f"/api/digests/{digest_id}", json={"subjects": {"en": "Today in Macau"}})
    assert edited.status_code == 200, edited.text
    assert edited.json()["subjects"] == {"pt": "O resumo de hoje", "en": "Today in Macau"}

    # A draft reaches nobody until it is scheduled.
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0

    scheduled = api.post(f"/api/digests/{digest_id}/schedule", json={})
    assert scheduled.status_code == 200, scheduled.text
    rita = mailbox.wait_for("rita@example.com")[0].message
    li = mailbox.wait_for("li@example.com")[0].message
    ana = mailbox.wait_for("ana@example.com")[0].message

    assert rita["Subject"] == "O resumo de hoje"
    assert "Bom dia! Três notícias." in " ".join(re.sub(r"<[^>]+>", "", html_of(rita)).split())
    assert "Bom dia! **Três** notícias." in text_of(rita)
    # The pinned stories first, in the editor's order; Rita's version of the bridge story.
    rita_html = html_of(rita)
    assert rita_html.index("Last week") < rita_html.index("Macau reabre a ponte")
    assert "Macau reopens the bridge" not in rita_html
    assert "Markets open higher" not in rita_html  # left out, for everyone
    assert "Markets open higher" not in html_of(ana)

    # No Chinese note or subject: the newsletter's language's note, and its subject rule.
    assert "Good morning from Macau." in text_of(li)
    assert ana["Subject"] == "Today in Macau"

    # Once it has started, it cannot be edited.
    refused = api.patch(f"/api/digests/{digest_id}", json={"intro": {"pt": "Tarde demais"}})
    assert refused.status_code == 409
    assert "has not started" in refused.json()["detail"]


def test_a_pinned_story_reaches_a_reader_of_other_topics(
    api: TestClient, mailbox: Mailbox, worker: subprocess.Popen[bytes]
) -> None:
    made = stories()
    reader = add_reader("fan@example.com")
    with db.session_scope() as session:
        from newsletter.core.models import Subscriber

        fan = session.get(Subscriber, reader)
        assert fan is not None
        fan.topics = ["sport"]
    created = api.post(
        "/api/digests", json={"newsletter": "daily", "pinned": [made["markets"]], "draft": False}
    )
    assert created.status_code == 201, created.text
    html = html_of(mailbox.wait_for("fan@example.com")[0].message)
    assert html.index("Markets open higher") < html.index("Benfica wins the derby")
    assert "Macau reopens the bridge" not in html  # not pinned, not their topic


def test_shaping_refusals_are_said_in_words_and_change_nothing(api: TestClient) -> None:
    made = stories()
    digest_id = api.post("/api/digests", json={"newsletter": "daily", "draft": True}).json()["id"]
    with db.session_scope() as session:
        set_hidden(session, article_id=made["derby"], hidden=True)
    cases = [
        ({"pinned": [made["derby"]]}, "hidden"),
        ({"pinned": [999999]}, "There is no article 999999"),
        ({"pinned": [made["bridge"]], "excluded": [made["bridge"]]}, "both pinned and left out"),
        ({"intro": {"fr": "Bonjour"}}, "language"),
        ({"subjects": {"pt": "a\nb"}}, "line breaks"),
        ({"intro": {"pt": "x" * 5001}}, "too long"),
    ]
    for change, said in cases:
        response = api.patch(f"/api/digests/{digest_id}", json=change)
        assert response.status_code == 422, (change, response.text)
        assert said in response.text, (change, response.text)
    after = api.get(f"/api/digests/{digest_id}").json()
    assert (after["pinned"], after["excluded"], after["intro"], after["subjects"]) == (
        [],
        [],
        {},
        {},
    )
    assert api.patch("/api/digests/999999", json={}).status_code == 404
    assert api.post("/api/digests/999999/schedule", json={}).status_code == 404
    assert api.post(f"/api/digests/{digest_id}/cancel").status_code == 200
    again = api.post(f"/api/digests/{digest_id}/schedule", json={})
    assert again.status_code == 409 and "only a draft" in again.text


def test_the_note_is_markdown_made_safe(api: TestClient) -> None:
    stories()
    digest_id = api.post(
        "/api/digests",
        json={
            "newsletter": "daily",
            "draft": True,
            "intro": {
                "en": "<script>alert(1)</script> [click](javascript:alert(1)) "
                "[ours](https://example.com/a) ![pixel](https://tracker.example/p.gif)"
            },
        },
    ).json()["id"]
    html = api.get(f"/api/digests/{digest_id}/preview", params={"language": "en"}).text
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert '<a href="https://example.com/a">ours</a>' in html
    note = html.split('class="intro"', 1)[1].split("</div>", 1)[0]
    assert "<img" not in note  # a picture in a note would be a tracking pixel


def test_the_cli_makes_edits_and_schedules_a_draft(
    clean_db: str, mailbox: Mailbox, worker: subprocess.Popen[bytes]
) -> None:
    made = stories()
    add_reader("rita@example.com", language="pt")
    created = run_cli("digest", "send", "--draft", "--json", database_url=clean_db)
    assert created.returncode == 0, created.stderr
    digest_id = re.search(r'"id": (\d+)', created.stdout)
    assert digest_id
    number = digest_id.group(1)
    with db.session_scope() as session:
        slug = session.get(Digest, int(number))
        assert slug is not None and slug.state == DigestState.DRAFT
    from newsletter.core.models import Article

    with db.session_scope() as session:
        derby_slug = session.get(Article, made["derby"]).slug  # type: ignore[union-attr]

    edited = run_cli(
        "digest",
        "edit",
        number,
        "--note",
        "pt=Olá, leitores.",
        "--subject",
        "pt=Hoje",
        "--pin",
        derby_slug,
        "--exclude",
        str(made["markets"]),
        database_url=clean_db,
    )
    assert edited.returncode == 0, edited.stderr
    assert f"pinned [{made['derby']}]" in edited.stdout

    for bad, said in [
        (["--note", "fr=Bonjour"], "LANG=TEXT"),
        (["--pin", "no-such-article"], "There is no article 'no-such-article'"),
        (["--note-file", "pt=/nonexistent/note.md"], "Cannot read the note"),
    ]:
        refused = run_cli("digest", "edit", number, *bad, database_url=clean_db)
        assert refused.returncode == 1, bad
        assert said in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, bad

    sent = run_cli("digest", "schedule", number, database_url=clean_db)
    assert sent.returncode == 0, sent.stderr
    assert "Will reach 1 reader" in sent.stdout
    message = mailbox.wait_for("rita@example.com")[0].message
    assert message["Subject"] == "Hoje"
    assert "Olá, leitores." in text_of(message)
    assert "Markets open higher" not in text_of(message)
    late = run_cli("digest", "edit", number, "--note", "pt=Tarde", database_url=clean_db)
    assert late.returncode == 1 and "has not started" in late.stderr


@pytest.fixture
def dashboard(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, str]]:
    from newsletter.web.app import create_app

    fast = get_settings().model_copy(update={"admin_signin_delay_seconds": 0.01})
    monkeypatch.setattr(auth, "get_settings", lambda: fast)
    with TestClient(create_app(), base_url="http://testserver") as client:
        login_csrf = _csrf_of(client.get("/admin/login").text)
        signed_in = client.post(
            "/admin/login",
            data={"token": fast.admin_token, "csrf_token": login_csrf, "next": "/admin"},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303
        yield client, _csrf_of(client.get("/admin/digests").text)


def _csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def test_the_dashboard_desk_saves_notes_places_and_left_out_stories(
    dashboard: tuple[TestClient, str],
) -> None:
    client, csrf = dashboard
    made = stories()
    created = client.post(
        "/admin/digests",
        data={"csrf_token": csrf, "newsletter": "daily", "window": "last"},
        follow_redirects=False,
    )
    digest_id = int(created.headers["location"].rsplit("/", 1)[1])
    page = client.get(f"/admin/digests/{digest_id}").text
    assert "Editor's desk" in page and "Benfica wins the derby" in page
    listed = [int(i) for i in re.findall(r'name="story" value="(\d+)"', page)]
    places = {made["derby"]: "2", made["bridge"]: "1"}
    saved = client.post(
        f"/admin/digests/{digest_id}/edit",
        data={
            "csrf_token": csrf,
            "note_pt": "Olá!\nDuas linhas.",
            "subject_en": "Today",
            "story": [str(i) for i in listed],
            "order": [places.get(i, "") for i in listed],
            "exclude": [str(made["markets"])],
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    with db.session_scope() as session:
        digest = session.get(Digest, digest_id)
        assert digest is not None
        assert digest.pinned == [made["bridge"], made["derby"]]
        assert digest.excluded == [made["markets"]]
        assert digest.intro == {"pt": "Olá!\nDuas linhas."}
        assert digest.subjects == {"en": "Today"}
    page = client.get(f"/admin/digests/{digest_id}").text
    assert "Olá!\nDuas linhas." in page
    assert re.search(rf'name="exclude" value="{made["markets"]}" checked', page)

    bad = client.post(
        f"/admin/digests/{digest_id}/edit",
        data={"csrf_token": csrf, "story": [str(listed[0])], "order": ["first"]},
    )
    assert bad.status_code == 422 and "A story&#39;s place is a number" in bad.text
    with db.session_scope() as session:
        digest = session.get(Digest, digest_id)
        assert digest is not None and digest.pinned == [made["bridge"], made["derby"]]
