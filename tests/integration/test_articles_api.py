"""The editors' article API over HTTP: the admin token, idempotent adds, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Article
from newsletter.web import articles_api
from newsletter.web.app import create_app

ARTICLE = {
    "title": "Macau reabre a ponte",
    "body": "A ponte reabriu hoje às 8h, depois de três dias fechada. O trânsito é normal.\n\n"
    "As autoridades agradecem a paciência dos condutores.",
}
MISSING = object()  # a field left out of the request


def build_app() -> FastAPI:
    app = create_app()
    # Until the application includes the router itself.
    if not any(getattr(route, "path", None) == "/api/articles" for route in app.routes):
        app.include_router(articles_api.router)
    return app


@pytest.fixture
def client(clean_db: str) -> Iterator[TestClient]:
    with TestClient(build_app()) as test_client:
        test_client.headers["Authorization"] = f"Bearer {get_settings().admin_token}"
        yield test_client


def article_count() -> int:
    with db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Article)) or 0)


def stored(article_id: int) -> Article:
    with db.session_scope() as session:
        article = session.get(Article, article_id)
    assert article is not None
    return article


# --- The admin token -------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer", "", "token-without-scheme"],
)
def test_without_the_admin_token_nothing_is_added_or_listed(
    client: TestClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    client.headers.pop("Authorization")
    for response in (
        client.post("/api/articles", json=ARTICLE, headers=headers),
        client.get("/api/articles", headers=headers),
    ):
        assert response.status_code == 401
        assert "admin token" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    assert article_count() == 0


def test_the_token_is_checked_before_the_body(client: TestClient) -> None:
    client.headers.pop("Authorization")
    response = client.post("/api/articles", json={"title": ""})
    assert response.status_code == 401


# --- Adding ----------------------------------------------------------------------------


def test_an_article_is_added_once_then_found_again(client: TestClient) -> None:
    first = client.post("/api/articles", json=ARTICLE)
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["title"] == "Macau reabre a ponte"
    assert created["body"] == ARTICLE["body"]
    # No summary given: the lede's first sentences; no language given: guessed.
    assert created["summary"] == (
        "A ponte reabriu hoje às 8h, depois de três dias fechada. O trânsito é normal."
    )
    assert created["language"] == "pt"
    assert created["source"] == "api"
    assert created["slug"] == "macau-reabre-a-ponte"
    assert (created["priority"], created["hidden"], created["topics"]) == (0, False, [])

    again = client.post("/api/articles", json=ARTICLE)
    assert again.status_code == 200
    assert again.json() == created
    assert article_count() == 1


def test_every_field_is_taken(client: TestClient) -> None:
    response = client.post(
        "/api/articles",
        json={
            **ARTICLE,
            "summary": "  A ponte\nreabriu.  ",
            "url": "https://plataforma.example/2026/11/ponte",
            "language": "pt-BR",
            "topics": ["Macau", "transportes", "macau"],
            "published_at": "2026-11-20T08:00:00+08:00",
            "priority": 5,
            "slug": "ponte-de-macau",
            "hidden": True,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["summary"] == "A ponte reabriu."
    assert body["url"] == "https://plataforma.example/2026/11/ponte"
    assert body["language"] == "pt"
    assert body["topics"] == ["macau", "transportes"]
    assert body["published_at"] == "2026-11-20T00:00:00+00:00"
    assert (body["priority"], body["slug"], body["hidden"]) == (5, "ponte-de-macau", True)
    article = stored(body["id"])
    assert (article.priority, article.slug, article.hidden) == (5, "ponte-de-macau", True)


def test_a_time_without_an_offset_is_utc_and_topics_may_be_a_string(client: TestClient) -> None:
    response = client.post(
        "/api/articles",
        json={**ARTICLE, "published_at": "2026-11-20T08:00:00", "topics": "macau, china"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["published_at"] == "2026-11-20T08:00:00+00:00"
    assert response.json()["topics"] == ["macau", "china"]


def test_chinese_and_english_are_guessed(client: TestClient) -> None:
    chinese = client.post(
        "/api/articles", json={"title": "澳门大桥重新开放", "body": "大桥今天重新开放。"}
    )
    english = client.post(
        "/api/articles",
        json={"title": "Bridge reopens", "body": "The bridge reopened this morning in Macau."},
    )
    assert (chinese.json()["language"], english.json()["language"]) == ("zh", "en")


def test_a_repeat_does_not_change_the_stored_article(client: TestClient) -> None:
    first = client.post("/api/articles", json={**ARTICLE, "priority": 1})
    again = client.post("/api/articles", json={**ARTICLE, "priority": 9, "slug": "other"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert (again.json()["priority"], again.json()["slug"]) == (1, first.json()["slug"])


def test_a_slug_that_names_another_article_is_refused(client: TestClient) -> None:
    client.post("/api/articles", json={**ARTICLE, "slug": "ponte"})
    response = client.post(
        "/api/articles", json={"title": "Outra", "body": "Outro texto.", "slug": "ponte"}
    )
    assert response.status_code == 409
    assert "already names another article" in response.json()["detail"]
    assert article_count() == 1


def test_hostile_html_is_stored_verbatim_as_text(client: TestClient) -> None:
    title = "<script>alert('t')</script> & <b>bold</b>"
    body = "<img src=x onerror=alert(1)>\n\n<p>Olá &amp; adeus</p> </textarea>{{ 7*7 }}"
    response = client.post("/api/articles", json={"title": title, "body": body})
    assert response.status_code == 201, response.text
    article = stored(response.json()["id"])
    assert (article.title, article.body) == (title, body)
    listed = client.get("/api/articles").json()["articles"]
    assert (listed[0]["title"], listed[0]["body"]) == (title, body)


# --- Bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"title": MISSING}, "title: Field required"),
        ({"title": None}, "title: Input should be a valid string"),
        ({"title": ""}, "The title is empty"),
        ({"title": "   "}, "The title is empty"),
        ({"title": "x" * 501}, "too long (at most 500 characters)"),
        ({"title": "Macau\nreabre"}, "control characters or line breaks"),
        ({"title": "Macau\r\nBcc: x@example.com"}, "control characters or line breaks"),
        ({"title": "Macau\x00"}, "control characters"),
        ({"title": "Macau \u202eetnop"}, "control characters"),
        ({"title": 42}, "title: Input should be a valid string"),
        ({"body": MISSING}, "The body, the article's text, is required"),
        ({"body": None}, "The body, the article's text, is required"),
        ({"body": "  \n\n "}, "The body is empty"),
        ({"body": "texto\x00binário"}, "NUL"),
        ({"body": ["a"]}, "The body must be text"),
        ({"summary": "x" * 1001}, "summary is longer than 1000"),
        ({"url": "javascript:alert(1)"}, "http:// or https://"),
        ({"url": "ftp://plataforma.example/x"}, "http:// or https://"),
        ({"url": "https://"}, "http:// or https://"),
        ({"url": "https://plataforma.example/a b"}, "spaces"),
        ({"url": "https://plataforma.example/" + "x" * 2000}, "longer than 2000"),
        ({"url": "http://[::1"}, "not a valid address"),
        ({"language": "fr"}, "Unknown language 'fr'; choose one of pt, en, zh"),
        ({"language": 1}, "language"),
        ({"topics": ["Not a topic!"]}, "is not a topic name"),
        ({"topics": [f"t{i}" for i in range(21)]}, "at most 20 topics"),
        ({"topics": 5}, "list of names or a comma-separated string"),
        ({"topics": [1, 2]}, "Each topic must be text"),
        ({"published_at": "yesterday"}, "published_at"),
        ({"published_at": "2026-13-45T00:00:00Z"}, "published_at"),
        ({"priority": "high"}, "priority: Input should be a valid integer"),
        ({"priority": 1.5}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": 10**9}, "less than or equal to 1000"),
        ({"slug": "Bad Slug"}, "lower-case letters and digits"),
        ({"slug": "a" * 81}, "at most 80 characters"),
        ({"hidden": "yes"}, "hidden"),
        ({"story": "macau bridge"}, "lower-case letters and digits joined by single dashes"),
        ({"story": "article:12"}, "is not a story key"),
        ({"story": ["macau"]}, "The story must be text"),
        ({"titel": "typo"}, "titel: Extra inputs are not permitted"),
    ],
)
def test_bad_input_is_refused_in_words_and_stores_nothing(
    client: TestClient, changes: dict[str, Any], words: str
) -> None:
    payload = {k: v for k, v in {**ARTICLE, **changes}.items() if v is not MISSING}
    response = client.post("/api/articles", json=payload)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail, detail
    assert article_count() == 0


@pytest.mark.parametrize(
    "content", [b"{not json", b"[]", b'"a string"', b"", b'{"title": "t", "body": "b"']
)
def test_a_body_that_is_no_json_object_is_refused(client: TestClient, content: bytes) -> None:
    response = client.post(
        "/api/articles", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"]
    assert article_count() == 0


def test_a_body_over_200_kb_is_refused(client: TestClient) -> None:
    response = client.post("/api/articles", json={**ARTICLE, "body": "a" * (200 * 1024 + 1)})
    assert response.status_code == 422
    assert "larger than 200 KB" in response.json()["detail"]
    # Counted in bytes of UTF-8: 70,000 Chinese characters are 210,000 bytes.
    response = client.post("/api/articles", json={**ARTICLE, "body": "桥" * 70_000})
    assert response.status_code == 422
    fits = client.post("/api/articles", json={**ARTICLE, "body": "a" * (200 * 1024)})
    assert fits.status_code == 201
    assert article_count() == 1


def test_a_request_over_the_apps_size_cap_is_refused_before_reading(client: TestClient) -> None:
    cap = get_settings().max_api_request_bytes
    response = client.post("/api/articles", json={**ARTICLE, "body": "a" * (cap + 1)})
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]
    assert article_count() == 0


# --- Listing ---------------------------------------------------------------------------


def test_articles_are_listed_newest_first_without_hidden_ones(client: TestClient) -> None:
    for day, hidden in ((18, False), (20, False), (19, True)):
        response = client.post(
            "/api/articles",
            json={
                "title": f"Notícia do dia {day}",
                "body": f"Texto do dia {day}.",
                "published_at": f"2026-11-{day}T12:00:00Z",
                "hidden": hidden,
            },
        )
        assert response.status_code == 201
    listed = client.get("/api/articles").json()["articles"]
    assert [a["title"] for a in listed] == ["Notícia do dia 20", "Notícia do dia 18"]
    assert set(listed[0]) >= {"id", "slug", "summary", "body", "published_at", "topics"}
    one = client.get("/api/articles", params={"limit": 1}).json()["articles"]
    assert [a["title"] for a in one] == ["Notícia do dia 20"]
    everything = client.get("/api/articles", params={"include_hidden": "true"}).json()
    assert len(everything["articles"]) == 3


@pytest.mark.parametrize("limit", ["0", "-1", "501", "many"])
def test_a_bad_limit_is_refused_in_words(client: TestClient, limit: str) -> None:
    response = client.get("/api/articles", params={"limit": limit})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("limit:")


# --- Stories ---------------------------------------------------------------------------


def test_translations_are_tied_into_one_story_and_listed_by_it(client: TestClient) -> None:
    pt = client.post("/api/articles", json={**ARTICLE, "story": "Macau-Bridge"})
    assert pt.status_code == 201, pt.text
    assert pt.json()["story"] == "macau-bridge"
    en = client.post(
        "/api/articles",
        json={"title": "Macau reopens the bridge", "body": "The bridge reopened at 8 today."},
    )
    assert en.json()["story"] is None
    other = client.post("/api/articles", json={"title": "Lisbon trams", "body": "Late again."})
    assert other.status_code == 201

    tied = client.patch(f"/api/articles/{en.json()['id']}", json={"story": "macau-bridge"})
    assert tied.status_code == 200, tied.text
    assert tied.json()["story"] == "macau-bridge"
    assert stored(en.json()["id"]).story == "macau-bridge"

    versions = client.get("/api/articles", params={"story": "macau-bridge"}).json()["articles"]
    assert sorted(a["title"] for a in versions) == [
        "Macau reabre a ponte",
        "Macau reopens the bridge",
    ]
    untied = client.patch(f"/api/articles/{en.json()['id']}", json={"story": None})
    assert untied.json()["story"] is None
    versions = client.get("/api/articles", params={"story": "macau-bridge"}).json()["articles"]
    assert [a["title"] for a in versions] == ["Macau reabre a ponte"]


@pytest.mark.parametrize(
    ("path", "payload", "status", "words"),
    [
        ("/api/articles/{id}", {"story": "not a key"}, 422, "is not a story key"),
        ("/api/articles/{id}", {"story": 5}, 422, "The story must be text"),
        ("/api/articles/{id}", {}, 422, "story: Field required"),
        ("/api/articles/{id}", {"story": "x", "title": "y"}, 422, "Extra inputs"),
        ("/api/articles/999999", {"story": "macau-bridge"}, 404, "No article with id 999999"),
    ],
)
def test_a_bad_story_change_is_refused_in_words_and_changes_nothing(
    client: TestClient, path: str, payload: dict[str, Any], status: int, words: str
) -> None:
    created = client.post("/api/articles", json={**ARTICLE, "story": "macau-bridge"}).json()
    response = client.patch(path.format(id=created["id"]), json=payload)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert stored(created["id"]).story == "macau-bridge"


def test_a_bad_story_filter_is_refused_in_words(client: TestClient) -> None:
    response = client.get("/api/articles", params={"story": "no such: key"})
    assert response.status_code == 422
    assert "is not a story key" in response.json()["detail"]
