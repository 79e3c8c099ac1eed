"""The admin dashboard's pages: newsletters, articles, subscribers and suppressions.

Each page and action against the real database (SQLite and PostgreSQL), signed in as an
editor would be; bad input gets the page again with a 4xx and changes nothing.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from newsletter.bounces import policy as bounces
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import (
    Article,
    EventKind,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.core.validation import email_hash
from newsletter.subscribers import store as subscribers
from newsletter.web.admin import articles as articles_pages
from newsletter.web.admin import subscribers as subscriber_pages
from newsletter.web.app import create_app
from tests.factories import add_reader, sent_delivery

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'

MARKDOWN = b"""---
title: Macau reabre a ponte
url: https://example.com/ponte
published_at: 2026-11-20T08:00:00+08:00
language: pt
topics: [macau, transportes]
---
A ponte reabriu hoje, depois de tres dias fechada. O transito e normal.
"""

SCRAPED = (
    "Home \u00bb World \u00bb Lisbon trams run again\n\n"
    "Lisbon trams run again\n\n"
    "The city's trams returned to the streets on Monday after a week of repairs.\n\n"
    "Passengers welcomed the return of line 28.\n"
).encode()


@pytest.fixture
def client(clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    # Uploads waiting for their confirmation go to this test's own folder, not var/.
    monkeypatch.setattr(subscriber_pages, "_uploads_dir", lambda: tmp_path)
    with TestClient(create_app(), base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def csrf(client: TestClient) -> str:
    """Sign the client in; the session's CSRF token."""
    login = client.get("/admin/login")
    form_token = _csrf_in(login.text)
    response = client.post(
        "/admin/login",
        data={"token": get_settings().admin_token, "csrf_token": form_token, "next": "/admin"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return _csrf_in(client.get("/admin").text)


def _csrf_in(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def post(client: TestClient, url: str, csrf: str, **data: Any) -> Response:
    response: Response = client.post(url, data={"csrf_token": csrf, **data}, follow_redirects=False)
    return response


def upload(
    client: TestClient, url: str, csrf: str, files: list[tuple[str, bytes]], field: str = "file"
) -> Response:
    response: Response = client.post(
        url,
        data={"csrf_token": csrf},
        files=[(field, (name, content, "application/octet-stream")) for name, content in files],
        follow_redirects=False,
    )
    return response


def count(model: Any) -> int:
    with db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def newsletter(slug: str) -> Newsletter | None:
    with db.session_scope() as session:
        return session.scalar(select(Newsletter).where(Newsletter.slug == slug))


def subscriber(subscriber_id: int) -> Subscriber:
    with db.session_scope() as session:
        found = session.get(Subscriber, subscriber_id)
        assert found is not None
        return found


def articles() -> dict[str, Article]:
    with db.session_scope() as session:
        return {a.title: a for a in session.scalars(select(Article))}


def suppressed() -> list[str | None]:
    with db.session_scope() as session:
        return sorted((e or "" for e in session.scalars(select(Suppression.email))), key=str)


# --- Signing in ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/admin/newsletters", "/admin/articles", "/admin/subscribers", "/admin/suppressions"]
)
def test_every_page_needs_a_sign_in(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login?next=")


# --- Newsletters and schedules ---------------------------------------------------------


def test_newsletters_are_listed_with_their_schedule_in_words(client: TestClient, csrf: str) -> None:
    add_reader("ana@example.com")
    page = client.get("/admin/newsletters")
    assert page.status_code == 200
    assert "<code>daily</code>" in page.text and "no schedule" in page.text

    response = post(
        client,
        "/admin/newsletters/daily/schedule",
        csrf,
        cron="30 7 * * 1-5",
        time_zone="Asia/Macau",
        action="set",
    )
    assert response.status_code == 303
    page = client.get("/admin/newsletters")
    assert "daily: 07:30 on Monday to Friday (Asia/Macau)." in page.text  # the notice
    assert "07:30 on Monday to Friday" in page.text and "next: " in page.text
    assert re.search(r"next: \d{4}-\d\d-\d\d 07:30 Asia/Macau \(UTC\+8\)", page.text)
    row = re.search(r"<code>daily</code>.*?</tr>", page.text, re.S)
    assert row and '<td class="num">1</td>' in row.group(0)  # one subscriber
    stored = newsletter("daily")
    assert stored and stored.schedule_cron == "30 7 * * 1-5" and stored.time_zone == "Asia/Macau"

    response = post(client, "/admin/newsletters/daily/schedule", csrf, action="clear")
    assert response.status_code == 303
    stored = newsletter("daily")
    assert stored and stored.schedule_cron is None and stored.time_zone == "Asia/Macau"


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("61 7 * * *", "minutes run 0-59"),
        ("0 7 * * x", "The day-of-week field"),
        ("*/5 * * * *", "only 5 minutes apart"),
        ("0 7 * *", "A schedule has five fields"),
        ("0 7 30 2 *", "never comes round"),
        ("@daily", "Shortcuts such as"),
    ],
)
def test_an_invalid_schedule_is_refused_with_words(
    client: TestClient, csrf: str, cron: str, words: str
) -> None:
    post(client, "/admin/newsletters/daily/schedule", csrf, cron="0 7 * * *", action="set")
    response = post(
        client,
        "/admin/newsletters/daily/schedule",
        csrf,
        cron=cron,
        time_zone="Asia/Macau",
        action="set",
    )
    assert response.status_code == 422
    assert words in response.text and 'class="error"' in response.text
    stored = newsletter("daily")
    assert stored and stored.schedule_cron == "0 7 * * *"
    assert stored.time_zone == get_settings().default_time_zone


def test_a_schedule_needs_a_known_newsletter_and_time_zone(client: TestClient, csrf: str) -> None:
    response = post(client, "/admin/newsletters/nope/schedule", csrf, cron="0 7 * * *")
    assert response.status_code == 404 and "There is no newsletter called" in response.text
    response = post(
        client, "/admin/newsletters/daily/schedule", csrf, cron="0 7 * * *", time_zone="Mars/Base"
    )
    assert response.status_code == 422 and "Europe/Lisbon" in response.text
    response = post(client, "/admin/newsletters/daily/schedule", csrf, cron="  ", action="set")
    assert response.status_code == 422
    stored = newsletter("daily")
    assert stored and stored.schedule_cron is None


def test_a_newsletter_is_added(client: TestClient, csrf: str) -> None:
    response = post(
        client,
        "/admin/newsletters",
        csrf,
        slug="macau-weekly",
        name=HOSTILE,
        language="zh",
        time_zone="Asia/Macau",
        cron="0 9 * * 1",
    )
    assert response.status_code == 303
    page = client.get("/admin/newsletters")
    assert "Newsletter macau-weekly added." in page.text
    assert "09:00 on Monday" in page.text
    assert HOSTILE not in page.text and "&lt;script&gt;" in page.text
    added = newsletter("macau-weekly")
    assert added and added.name == HOSTILE and added.language == "zh"


def test_a_newsletter_is_added_with_its_names_in_other_languages(
    client: TestClient, csrf: str
) -> None:
    response = post(
        client,
        "/admin/newsletters",
        csrf,
        slug="macau-weekly",
        name="Macau weekly",
        description="The week in Macau",
        name_pt="Macau semanal",
        name_zh="澳门周报",
        description_zh="澳门一周",
        name_en="",
        language="en",
        time_zone="Asia/Macau",
    )
    assert response.status_code == 303
    added = newsletter("macau-weekly")
    assert added and added.description == "The week in Macau"
    assert added.translations == {
        "pt": {"name": "Macau semanal"},
        "zh": {"name": "澳门周报", "description": "澳门一周"},
    }
    page = client.get("/admin/newsletters")
    assert 'value="澳门周报"' in page.text and 'value="Macau semanal"' in page.text


def test_the_names_of_a_newsletter_in_each_language_are_set_and_removed(
    client: TestClient, csrf: str
) -> None:
    response = post(
        client, "/admin/newsletters/daily/names", csrf, name_pt="Resumo da manhã", name_zh=""
    )
    assert response.status_code == 303
    stored = newsletter("daily")
    # The Chinese name `newsletter up` gave is removed: the own name is shown again.
    assert stored and stored.translations == {"pt": {"name": "Resumo da manhã"}}
    assert "daily: names in each language saved." in client.get("/admin/newsletters").text

    refused = post(client, "/admin/newsletters/daily/names", csrf, name_pt="A\nB")
    assert refused.status_code == 422 and "line breaks" in refused.text
    assert post(client, "/admin/newsletters/nope/names", csrf, name_pt="X").status_code == 404
    stored = newsletter("daily")
    assert stored and stored.translations == {"pt": {"name": "Resumo da manhã"}}


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"slug": "daily", "name": "Again"}, "There is already a newsletter called"),
        ({"slug": "Not a slug!", "name": "X"}, "cannot be a newsletter"),
        ({"slug": "weekly", "name": ""}, "Please give the newsletter a name."),
        ({"slug": "weekly", "name": "W", "language": "fr"}, "We do not offer the language"),
        ({"slug": "weekly", "name": "W", "cron": "0 25 * * *"}, "hours 0-23"),
    ],
)
def test_a_bad_newsletter_is_refused(
    client: TestClient, csrf: str, fields: dict[str, str], words: str
) -> None:
    response = post(client, "/admin/newsletters", csrf, **{"time_zone": "Europe/Lisbon", **fields})
    assert response.status_code == 422 and words in response.text
    assert count(Newsletter) == 1


# --- Articles --------------------------------------------------------------------------


def test_articles_are_imported_by_upload_with_a_report_per_file(
    client: TestClient, csrf: str
) -> None:
    files = [
        ("ponte.md", MARKDOWN),
        ("trams.txt", SCRAPED),
        ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00"),
        ("empty.md", b"---\ntitle: ''\n---\n"),
    ]
    response = upload(client, "/admin/articles/import", csrf, files, field="files")
    assert response.status_code == 200
    report = _report_rows(response.text)
    assert report["ponte.md"][0] == "imported"
    assert report["trams.txt"][0] == "imported"
    assert report["photo.png"] == ("refused", report["photo.png"][1])
    assert "not an article file" in report["photo.png"][1]
    assert report["empty.md"][0] == "refused" and "no title" in report["empty.md"][1]
    stored = articles()
    assert set(stored) == {"Macau reabre a ponte", "Lisbon trams run again"}
    ponte = stored["Macau reabre a ponte"]
    assert ponte.language == "pt" and ponte.topics == ["macau", "transportes"]
    assert ponte.source == "ponte.md"

    again = upload(client, "/admin/articles/import", csrf, files[:2], field="files")
    assert again.status_code == 200
    assert {name: row[0] for name, row in _report_rows(again.text).items()} == {
        "ponte.md": "already known",
        "trams.txt": "already known",
    }
    assert count(Article) == 2


def test_a_non_article_upload_is_refused_and_stores_nothing(client: TestClient, csrf: str) -> None:
    for files in (
        [("report.pdf", b"%PDF-1.4 ...")],
        [("binary.txt", b"\x00\x01\x02 not text")],
        [("latin1.md", "# Título\n\nÀ noite.".encode("latin-1"))],
        [("../../etc/passwd.md", b"---\nbogus: 1\n---\n# T\n\nBody.")],
    ):
        response = upload(client, "/admin/articles/import", csrf, files, field="files")
        assert response.status_code == 422, files
        assert "refused" in response.text
    assert count(Article) == 0
    nothing = client.post(
        "/admin/articles/import", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert nothing.status_code == 422 and "Choose one or more article files." in nothing.text


def _report_rows(page: str) -> dict[str, tuple[str, str]]:
    section = page.split("<h2>Import report</h2>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(
        r"<tr><td><code>(.*?)</code></td><td><span[^>]*>(.*?)</span></td><td>(.*?)</td></tr>",
        section,
        re.S,
    )
    return {name: (outcome, detail) for name, outcome, detail in rows}


def test_articles_are_listed_newest_first_and_paged(
    client: TestClient, csrf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(articles_pages, "PAGE_SIZE", 2)
    for day in (1, 2, 3):
        content = f"---\ntitle: Day {day}\npublished_at: 2026-11-0{day}T08:00:00Z\n---\nText {day}."
        upload(client, "/admin/articles/import", csrf, [(f"d{day}.md", content.encode())], "files")
    first = client.get("/admin/articles")
    assert first.status_code == 200
    assert first.text.index("Day 3") < first.text.index("Day 2") and "Day 1" not in first.text
    assert "page 1 of 2" in first.text
    second = client.get("/admin/articles?page=2")
    assert "Day 1" in second.text and "Day 2" not in second.text
    assert client.get("/admin/articles?page=0").status_code == 422
    assert client.get("/admin/articles?page=x").status_code == 422


def test_an_article_gets_a_priority_and_is_hidden_and_shown(client: TestClient, csrf: str) -> None:
    upload(client, "/admin/articles/import", csrf, [("ponte.md", MARKDOWN)], "files")
    article_id = articles()["Macau reabre a ponte"].id

    response = post(client, f"/admin/articles/{article_id}/priority", csrf, priority="7", page="1")
    assert response.status_code == 303 and response.headers["location"] == "/admin/articles?page=1"
    assert articles()["Macau reabre a ponte"].priority == 7
    assert "now has priority 7" in client.get("/admin/articles").text

    for bad in ("high", "1.5", "5000", ""):
        response = post(client, f"/admin/articles/{article_id}/priority", csrf, priority=bad)
        assert response.status_code == 422, bad
        assert "whole number from -1000 to 1000" in response.text
    assert articles()["Macau reabre a ponte"].priority == 7

    assert post(client, f"/admin/articles/{article_id}/hide", csrf).status_code == 303
    assert articles()["Macau reabre a ponte"].hidden is True
    page = client.get("/admin/articles")
    assert (
        "is hidden from digests" in page.text
        and f"/admin/articles/{article_id}/unhide" in page.text
    )
    assert client.get("/articles/macau-reabre-a-ponte").status_code == 404
    assert post(client, f"/admin/articles/{article_id}/unhide", csrf).status_code == 303
    assert articles()["Macau reabre a ponte"].hidden is False
    assert client.get("/articles/macau-reabre-a-ponte").status_code == 200


def test_an_editor_ties_translations_into_one_story(client: TestClient, csrf: str) -> None:
    upload(client, "/admin/articles/import", csrf, [("ponte.md", MARKDOWN)], "files")
    article_id = articles()["Macau reabre a ponte"].id

    response = post(client, f"/admin/articles/{article_id}/story", csrf, story=" Macau-Bridge ")
    assert response.status_code == 303, response.text
    assert articles()["Macau reabre a ponte"].story == "macau-bridge"
    page = client.get("/admin/articles").text
    assert "is a version of the story macau-bridge" in page
    assert 'name="story" value="macau-bridge"' in page

    for bad in ("macau bridge", "article:1", "x" * 101):
        response = post(client, f"/admin/articles/{article_id}/story", csrf, story=bad)
        assert response.status_code == 422, bad
        assert "lower-case letters and digits joined by single dashes" in response.text
    assert articles()["Macau reabre a ponte"].story == "macau-bridge"

    assert post(client, f"/admin/articles/{article_id}/story", csrf, story="").status_code == 303
    assert articles()["Macau reabre a ponte"].story is None
    assert "is a story of its own" in client.get("/admin/articles").text


def test_an_unknown_article_is_a_404(client: TestClient, csrf: str) -> None:
    for action, data in (
        ("priority", {"priority": "3"}),
        ("story", {"story": "macau-bridge"}),
        ("hide", {}),
        ("unhide", {}),
    ):
        response = post(client, f"/admin/articles/999999/{action}", csrf, **data)
        assert response.status_code == 404 and "No article with id 999999." in response.text
    assert post(client, "/admin/articles/0/hide", csrf).status_code == 422
    assert post(client, f"/admin/articles/{2**40}/hide", csrf).status_code == 422


def test_a_hostile_article_title_is_shown_as_text(client: TestClient, csrf: str) -> None:
    content = f"---\ntitle: '{HOSTILE}'\ntopics: [x]\n---\nBody.".encode()
    response = upload(client, "/admin/articles/import", csrf, [(f"{HOSTILE}.md", content)], "files")
    assert response.status_code == 200
    page = client.get("/admin/articles")
    assert HOSTILE in articles()
    for text in (response.text, page.text):
        assert "<script>alert" not in text and "<img src=x" not in text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text


# --- Subscribers -----------------------------------------------------------------------


def test_subscribers_are_found_by_part_of_the_address_or_name(
    client: TestClient, csrf: str
) -> None:
    add_reader("ana.silva@example.com", name="Ana Silva")
    add_reader("bruno@example.org", name="Bruno Costa")
    add_reader("chen_wei@example.cn", name="陈伟")
    page = client.get("/admin/subscribers")
    assert page.status_code == 200 and "3 subscribers" in page.text

    def found(q: str) -> set[str]:
        response = client.get("/admin/subscribers", params={"q": q})
        assert response.status_code == 200
        return set(re.findall(r'<a href="/admin/subscribers/\d+">([^<]+)</a>', response.text))

    assert found("SILVA") == {"ana.silva@example.com"}
    assert found("costa") == {"bruno@example.org"}
    assert found("陈") == {"chen_wei@example.cn"}
    assert found("example.") == {
        "ana.silva@example.com",
        "bruno@example.org",
        "chen_wei@example.cn",
    }
    # LIKE's wildcards match only themselves.
    assert found("_") == {"chen_wei@example.cn"}
    assert found("%") == set()
    assert found("n_w") == {"chen_wei@example.cn"}
    assert found("a_a") == set()


@pytest.mark.parametrize(
    "q",
    [
        "' OR '1'='1",
        "'; DROP TABLE subscribers; --",
        '" OR 1=1 --',
        "%' UNION SELECT email_key, email FROM subscribers --",
        "\\",
    ],
)
def test_an_sql_injection_looking_search_is_only_text(
    client: TestClient, csrf: str, q: str
) -> None:
    add_reader("ana@example.com")
    response = client.get("/admin/subscribers", params={"q": q})
    assert response.status_code == 200
    assert "0 subscribers" in response.text and "ana@example.com" not in response.text
    assert count(Subscriber) == 1
    export = client.get("/admin/subscribers/export.csv", params={"q": q})
    assert export.status_code == 200 and len(list(csv.reader(io.StringIO(export.text)))) == 1


def test_a_search_with_control_characters_is_refused(client: TestClient, csrf: str) -> None:
    response = client.get("/admin/subscribers", params={"q": "ana\x00"})
    assert response.status_code == 422 and 'class="error"' in response.text
    assert client.get("/admin/subscribers", params={"q": "x" * 400}).status_code == 422


def test_subscribers_are_paged(
    client: TestClient, csrf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriber_pages, "PAGE_SIZE", 2)
    for name in ("a", "b", "c"):
        add_reader(f"{name}@example.com")
    first = client.get("/admin/subscribers", params={"q": "example"})
    assert "a@example.com" in first.text and "c@example.com" not in first.text
    assert "page 1 of 2" in first.text and "q=example&amp;page=2" in first.text
    second = client.get("/admin/subscribers", params={"q": "example", "page": 2})
    assert "c@example.com" in second.text and "a@example.com" not in second.text


def test_one_subscriber_is_shown_with_subscriptions_events_and_deliveries(
    client: TestClient, csrf: str
) -> None:
    reader = add_reader("ana@example.com", name="Ana")
    sent_delivery(reader)
    page = client.get(f"/admin/subscribers/{reader}")
    assert page.status_code == 200
    assert "<h1>ana@example.com</h1>" in page.text
    assert "<code>daily</code></td><td>subscribed" in page.text
    assert EventKind.SIGNED_UP in page.text and EventKind.CONFIRMED in page.text
    assert re.search(r"Deliveries</span><strong>1</strong>", page.text)
    assert "not listed" in page.text
    assert "Reset bounces" not in page.text  # nothing to reset


def test_an_unknown_subscriber_is_a_404(client: TestClient, csrf: str) -> None:
    response = client.get("/admin/subscribers/999999")
    assert response.status_code == 404 and "No subscriber with id 999999." in response.text
    assert post(client, "/admin/subscribers/999999/reset-bounces", csrf).status_code == 404
    assert client.get("/admin/subscribers/0").status_code == 422
    assert client.get("/admin/subscribers/abc").status_code == 422


def test_bounces_are_reset(client: TestClient, csrf: str) -> None:
    reader = add_reader("gone@example.com")
    delivery = sent_delivery(reader)
    with db.session_scope() as session:
        bounces.record_hard_bounce(
            session,
            subscriber_id=reader,
            delivery_id=delivery,
            reply="550 5.1.1 no such user",
            source="smtp",
        )
    assert subscriber(reader).status == SubscriberStatus.BOUNCED
    page = client.get(f"/admin/subscribers/{reader}")
    assert "bounced" in page.text and "Reset bounces" in page.text and ">listed<" in page.text

    response = post(client, f"/admin/subscribers/{reader}/reset-bounces", csrf)
    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/subscribers/{reader}"
    after = subscriber(reader)
    assert after.status == SubscriberStatus.ACTIVE and after.soft_bounce_count == 0
    page = client.get(f"/admin/subscribers/{reader}")
    assert "Bounces reset" in page.text and EventKind.BOUNCES_RESET in page.text
    assert suppressed() == []


def test_a_hostile_subscriber_name_is_shown_as_text(client: TestClient, csrf: str) -> None:
    reader = add_reader("evil@example.com", name=HOSTILE[:200])
    for url in ("/admin/subscribers", f"/admin/subscribers/{reader}"):
        text = client.get(url).text
        assert "<script>alert" not in text and "<img src=x" not in text
        assert "&lt;script&gt;" in text
    searched = client.get("/admin/subscribers", params={"q": "<script>"})
    assert "evil@example.com" in searched.text and "<script>alert" not in searched.text
    assert "&lt;script&gt;" in searched.text


def test_subscribers_are_exported_as_csv(client: TestClient, csrf: str) -> None:
    add_reader("ana@example.com", name="Ana", language="pt")
    add_reader("formula@example.com", name='=HYPERLINK("http://evil")')
    add_reader("bruno@example.org", name="Bruno", confirmed=False)
    everyone = client.get("/admin/subscribers/export.csv")
    assert everyone.status_code == 200
    assert everyone.headers["content-type"].startswith("text/csv")
    assert 'filename="subscribers.csv"' in everyone.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(everyone.text)))
    assert [r["email"] for r in rows] == [
        "ana@example.com",
        "formula@example.com",
        "bruno@example.org",
    ]
    assert rows[0]["language"] == "pt" and rows[0]["subscriptions"] == "daily:subscribed"
    assert rows[2]["subscriptions"] == "daily:pending"
    # A spreadsheet must not run a name as a formula.
    assert rows[1]["name"] == '\'=HYPERLINK("http://evil")'

    searched = client.get("/admin/subscribers/export.csv", params={"q": "example.org"})
    assert [r["email"] for r in csv.DictReader(io.StringIO(searched.text))] == ["bruno@example.org"]


def test_a_subscriber_import_is_a_dry_run_first_then_confirmed(
    client: TestClient, csrf: str
) -> None:
    add_reader("known@example.com", name="Known")
    add_reader("same@example.com", name="Same")
    content = (
        b"email,name,language,topics,newsletter,confirmed\n"
        b"new@example.com,New Reader,pt,macau;china,daily,true\n"
        b"known@example.com,Renamed,,,,\n"
        b"same@example.com,,,,,\n"
        b"not-an-address,Bad,,,,\n"
        b"other@example.com,Other,fr,,,\n"
        b"new@example.com,Again,,,,\n"
    )
    response = upload(client, "/admin/subscribers/import", csrf, [("readers.csv", content)])
    assert response.status_code == 200
    cards = dict(
        re.findall(r'<span class="muted">([^<]+)</span><strong>(\d+)</strong>', response.text)
    )
    assert cards["Would add"] == "1" and cards["Would update"] == "1"
    assert cards["Unchanged"] == "1" and cards["Refused rows"] == "3"
    assert "'not-an-address': That email address is not valid" in html.unescape(response.text)
    assert "We do not offer the language" in response.text
    assert "duplicate of line 2" in response.text
    # Nothing has changed yet.
    assert count(Subscriber) == 2
    with db.session_scope() as session:
        assert subscribers.find_by_email(session, "known@example.com").name == "Known"

    upload_id = re.search(r'name="upload_id" value="([^"]+)"', response.text)
    assert upload_id
    done = post(client, "/admin/subscribers/import/confirm", csrf, upload_id=upload_id.group(1))
    assert done.status_code == 200
    assert "<h2>Imported</h2>" in done.text
    assert count(Subscriber) == 3
    with db.session_scope() as session:
        assert subscribers.find_by_email(session, "known@example.com").name == "Renamed"
        new = subscribers.find_by_email(session, "new@example.com")
        assert new.language == "pt" and new.topics == ["macau", "china"]
    # The upload is gone once used.
    again = post(client, "/admin/subscribers/import/confirm", csrf, upload_id=upload_id.group(1))
    assert again.status_code == 404 and "upload the file again" in again.text
    assert count(Subscriber) == 3


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"name,language\nAna,pt\n", "The file has no email column"),
        (b"email,shoe_size\na@example.com,42\n", "a column 'shoe_size' we do not know"),
        (b"", "The file is empty"),
        ("email,name\nana@example.com,Jo\u00e3o\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_a_bad_subscriber_file_is_refused(
    client: TestClient, csrf: str, content: bytes, words: str
) -> None:
    response = upload(client, "/admin/subscribers/import", csrf, [("bad.csv", content)])
    assert response.status_code == 422 and words in html.unescape(response.text)
    assert 'name="upload_id"' not in response.text
    assert count(Subscriber) == 0


@pytest.mark.parametrize("url", ["/admin/subscribers/import", "/admin/suppressions/import"])
def test_a_csv_upload_must_be_chosen_and_not_too_large(
    client: TestClient, csrf: str, url: str
) -> None:
    nothing = post(client, url, csrf)
    assert nothing.status_code == 422 and "Choose a CSV file." in nothing.text
    huge = b"email\n" + b"x" * (20 * 1024 * 1024)
    too_large = upload(client, url, csrf, [("huge.csv", huge)])
    assert too_large.status_code == 422
    assert "The file is larger than 20 MB; split it." in too_large.text
    assert count(Subscriber) == 0 and suppressed() == []


@pytest.mark.parametrize("upload_id", ["", "../../secret_key", "x" * 32 + "/..", "A" * 32])
def test_an_unknown_upload_is_not_imported(client: TestClient, csrf: str, upload_id: str) -> None:
    response = post(client, "/admin/subscribers/import/confirm", csrf, upload_id=upload_id)
    assert response.status_code == 404
    assert count(Subscriber) == 0


def test_the_import_page_explains_the_file(client: TestClient, csrf: str) -> None:
    page = client.get("/admin/subscribers/import")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text and "email, name, language" in page.text


# --- Suppressions ----------------------------------------------------------------------


def test_unverified_bounce_reports_are_shown_masked(client: TestClient, csrf: str) -> None:
    subscriber_id = add_reader("alice@example.com")
    with db.session_scope() as session:
        outcome = bounces.record_provider_event(
            session,
            provider="postmark",
            event_id="forged-1",
            kind="hard",
            settings=get_settings(),
            email="alice@example.com",
        )
    assert outcome.action == "unverified"
    page = client.get("/admin/suppressions")
    assert "Unverified bounce reports" in page.text and "(1 in 30 days)" in page.text
    assert "al…@example.com" in page.text and "alice@example.com" not in page.text
    with db.session_scope() as session:
        assert subscribers.get_subscriber(session, subscriber_id).status == "active"


def test_an_address_is_suppressed_and_removed(client: TestClient, csrf: str) -> None:
    response = post(client, "/admin/suppressions", csrf, email="Spam@Example.com", reason="asked")
    assert response.status_code == 303
    page = client.get("/admin/suppressions")
    assert "it will never be mailed" in page.text and "Spam@example.com" in page.text
    assert suppressed() == ["Spam@example.com"]
    again = post(client, "/admin/suppressions", csrf, email="spam@example.com")
    assert again.status_code == 303
    assert "was on the list already" in client.get("/admin/suppressions").text

    bad = post(client, "/admin/suppressions", csrf, email="not an address")
    assert bad.status_code == 422 and "That email address is not valid" in bad.text
    missing = post(client, "/admin/suppressions/remove", csrf, email="nobody@example.com")
    assert missing.status_code == 404 and "is not on the suppression list" in missing.text
    assert post(client, "/admin/suppressions/remove", csrf, email="").status_code == 422
    assert suppressed() == ["Spam@example.com"]

    removed = post(client, "/admin/suppressions/remove", csrf, email="SPAM@example.com")
    assert removed.status_code == 303
    assert suppressed() == []


def test_an_erased_reader_shows_only_as_a_hash_and_is_exported(
    client: TestClient, csrf: str
) -> None:
    reader = add_reader("erased@example.com")
    with db.session_scope() as session:
        subscribers.erase(session, subscriber_id=reader)
    post(client, "/admin/suppressions", csrf, email="kept@example.com")
    page = client.get("/admin/suppressions")
    digest = email_hash("erased@example.com")
    assert f"{digest[:16]}…" in page.text and "erased@example.com" not in page.text
    assert page.text.index("kept@example.com") < page.text.index(digest[:16])  # newest first

    export = client.get("/admin/suppressions/export.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["email"], r["reason"]) for r in rows] == [
        ("", "erased"),
        ("kept@example.com", "manual"),
    ]
    assert rows[0]["email_hash"] == digest


def test_suppressions_are_imported_from_csv(client: TestClient, csrf: str) -> None:
    post(client, "/admin/suppressions", csrf, email="old@example.com")
    content = b"email,reason\nnew@example.com,complaint\nold@example.com,\nbroken,\n"
    response = upload(client, "/admin/suppressions/import", csrf, [("list.csv", content)])
    assert response.status_code == 200
    assert "1 added, 1 already on the list, 1 refused" in response.text
    assert "That email address is not valid" in response.text
    assert suppressed() == ["new@example.com", "old@example.com"]

    for bad in (b"address\nx@example.com\n", b"\xff\xfe\x00b"):
        refused = upload(client, "/admin/suppressions/import", csrf, [("bad.csv", bad)])
        assert refused.status_code == 422 and 'class="error"' in refused.text
    assert suppressed() == ["new@example.com", "old@example.com"]


def test_suppressions_are_paged(
    client: TestClient, csrf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.web.admin import suppressions as suppression_pages

    monkeypatch.setattr(suppression_pages, "PAGE_SIZE", 2)
    for name in ("a", "b", "c"):
        post(client, "/admin/suppressions", csrf, email=f"{name}@example.com")
    first = client.get("/admin/suppressions")
    assert "c@example.com" in first.text and "a@example.com" not in first.text
    second = client.get("/admin/suppressions?page=2")
    assert "a@example.com" in second.text and "c@example.com" not in second.text


# --- CSRF ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/admin/newsletters", {"slug": "weekly", "name": "Weekly", "time_zone": "Europe/Lisbon"}),
        ("/admin/newsletters/daily/schedule", {"cron": "0 7 * * *", "action": "set"}),
        ("/admin/articles/{article}/priority", {"priority": "9"}),
        ("/admin/articles/{article}/hide", {}),
        ("/admin/articles/{article}/story", {"story": "macau-bridge"}),
        ("/admin/subscribers/{reader}/reset-bounces", {}),
        ("/admin/subscribers/import/confirm", {"upload_id": "{upload}"}),
        ("/admin/suppressions", {"email": "new@example.com"}),
        ("/admin/suppressions/remove", {"email": "listed@example.com"}),
    ],
)
def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, csrf: str, url: str, data: dict[str, str]
) -> None:
    upload(client, "/admin/articles/import", csrf, [("ponte.md", MARKDOWN)], "files")
    article = articles()["Macau reabre a ponte"].id
    reader = add_reader("bounced@example.com")
    with db.session_scope() as session:
        session.get(Subscriber, reader).soft_bounce_count = 2  # type: ignore[union-attr]
    post(client, "/admin/suppressions", csrf, email="listed@example.com")
    dry_run = upload(
        client, "/admin/subscribers/import", csrf, [("r.csv", b"email\nnew@example.com\n")]
    )
    upload_id = re.search(r'name="upload_id" value="([^"]+)"', dry_run.text)
    assert upload_id

    def state() -> tuple[Any, ...]:
        with db.session_scope() as session:
            stored = session.get(Article, article)
            assert stored
            return (
                count(Newsletter),
                newsletter("daily").schedule_cron,  # type: ignore[union-attr]
                stored.priority,
                stored.hidden,
                stored.story,
                subscriber(reader).soft_bounce_count,
                count(Subscriber),
                suppressed(),
            )

    before = state()
    fields = {
        key: value.format(article=article, reader=reader, upload=upload_id.group(1))
        for key, value in data.items()
    }
    for token in (None, "", "wrong-token", csrf[:-1]):
        sent = fields if token is None else {**fields, "csrf_token": token}
        response = client.post(
            url.format(article=article, reader=reader), data=sent, follow_redirects=False
        )
        assert response.status_code == 403, token
        assert "This form did not come from this dashboard" in response.text
    assert state() == before


def test_an_upload_without_the_csrf_token_is_refused(client: TestClient, csrf: str) -> None:
    for url, field, content in (
        ("/admin/articles/import", "files", MARKDOWN),
        ("/admin/subscribers/import", "file", b"email\nnew@example.com\n"),
        ("/admin/suppressions/import", "file", b"email\nnew@example.com\n"),
    ):
        response = client.post(
            url, files=[(field, ("x.md", content, "text/plain"))], follow_redirects=False
        )
        assert response.status_code == 403, url
    assert count(Article) == 0 and count(Subscriber) == 0 and count(Suppression) == 0


def test_a_subscriber_csv_larger_than_a_form_is_read(client: TestClient, csrf: str) -> None:
    # Readers' forms are capped at 64 KB; the dashboard's uploads are not held to that.
    rows = "".join(f"reader{n}@example.com,Reader {n}\n" for n in range(5000))
    content = ("email,name\n" + rows).encode()
    assert len(content) > 128 * 1024
    response = upload(client, "/admin/subscribers/import", csrf, [("big.csv", content)])
    assert response.status_code == 200, response.text[:300]
    cards = dict(
        re.findall(r'<span class="muted">([^<]+)</span><strong>(\d+)</strong>', response.text)
    )
    assert cards["Would add"] == "5000"
    assert count(Subscriber) == 0
