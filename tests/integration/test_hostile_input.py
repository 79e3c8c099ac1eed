"""Hostile input to the web app: wrong JSON types, deep nesting, lone surrogates, far dates,
oversize chunked bodies. Each is a 4xx with words and changes nothing, never a 500; and a
far date already stored (before the bound) still renders on every page that shows it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Article, Digest, DigestState, Subscriber
from newsletter.subscribers.newsletters import get_by_slug
from newsletter.web.admin.auth import SESSION_COOKIE
from newsletter.web.app import create_app
from tests.factories import add_article
from tests.fakes import RecordingQueue
from tests.integration.test_cli import newsletter
from tests.integration.test_security import concrete, routes, sign_in

# 30,000 deep: past Python's recursion limit, so json.loads raises RecursionError.
DEEP = "[" * 30_000 + "]" * 30_000
FAR_DATES = (
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
)


@pytest.fixture
def client(clean_db: str) -> Iterator[TestClient]:
    # Server errors come back as 500 answers, as a real client sees them, not as exceptions.
    app = create_app(queue=RecordingQueue())
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        yield client


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {get_settings().admin_token}"}


def post_json(client: TestClient, path: str, body: Any) -> Any:
    # json.dumps writes a lone surrogate as the escape \ud800, as a hostile client sends it.
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, content=text, headers={**admin(), "Content-Type": "application/json"})


def count(model: Any) -> int:
    with db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def assert_refused_in_words(response: Any, *words: str) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(detail.split()) >= 3, detail
    for word in words:
        assert word in detail, detail


def article(**fields: Any) -> dict[str, Any]:
    return {"title": "A title", "body": "Some text of the article.", **fields}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (article(topics=5), "topics"),
        (article(topics=True), "topics"),
        (article(topics=1.5), "topics"),
        (article(title="A \ud800 title"), "title"),
        (article(body="A body \udfff"), "body"),
        (article(summary="A summary \ud800"), "summary"),
        (article(url="https://example.com/\ud800"), "url"),
        (article(slug="a-\ud800"), "slug"),
        (article(language="e\ud800"), "language"),
        (article(topics=["\ud800"]), "topics"),
        (article(published_at="0001-01-01T00:00:00"), "1970"),
        (article(published_at="9999-12-31T23:59:59"), "1970"),
        (article(published_at="0001-01-01T00:00:00+14:00"), "1970"),
    ],
)
def test_hostile_article_fields_are_refused_in_words(
    client: TestClient, body: dict[str, Any], words: str
) -> None:
    assert_refused_in_words(post_json(client, "/api/articles", body), words)
    assert count(Article) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"send_at": "9999-12-31T23:59:59"},
        {"send_at": "0001-01-01T00:00:00"},
        {"since": "0001-01-01T00:00:00"},
        {"since": "0001-01-01T00:00:00+14:00"},
        {"subject": "A \ud800 subject"},
        {"newsletter": "daily\ud800"},
    ],
)
def test_hostile_digest_requests_are_refused_in_words(
    client: TestClient, body: dict[str, Any]
) -> None:
    assert_refused_in_words(post_json(client, "/api/digests", body))
    assert count(Digest) == 0


@pytest.mark.parametrize(
    "since", ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00"]
)
def test_a_preview_since_the_far_past_is_refused_in_words(client: TestClient, since: str) -> None:
    add_article("A story")
    response = client.get("/api/digests/preview", params={"since": since}, headers=admin())
    assert_refused_in_words(response, "1970")


@pytest.mark.parametrize("path", ["/api/articles", "/api/digests", "/subscribe"])
@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        '{"title": "a", "body": "b", "topics": ' + DEEP + "}",
        '{"email": "ana@example.com", "topics": ' + DEEP + "}",
    ],
)
def test_json_nested_past_the_recursion_limit_is_refused_in_words(
    client: TestClient, path: str, body: str
) -> None:
    assert_refused_in_words(post_json(client, path, body), "JSON")


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ana@example.com", "name": "Ana \ud800"},
        {"email": "ana\ud800@example.com"},
        {"email": "ana@example.com", "topics": 5},
        {"email": "ana@example.com", "topics": True},
        {"email": "ana@example.com", "topics": 1.5},
        {"email": "ana@example.com", "topics": ["\udfff"]},
        {"email": "ana@example.com", "newsletters": ["daily\ud800"]},
        {"email": "ana@example.com", "time_zone": "Asia/Macau\ud800"},
    ],
)
def test_hostile_signups_are_refused_in_words(client: TestClient, body: dict[str, Any]) -> None:
    response = post_json(client, "/subscribe", body)
    assert_refused_in_words(response)
    assert count(Subscriber) == 0
    assert not client.app.state.queue.jobs  # type: ignore[attr-defined]


def test_a_chunked_form_over_the_limit_under_admin_is_refused_with_413(
    client: TestClient,
) -> None:
    def chunks() -> Iterator[bytes]:
        # No Content-Length: the size is only known as the chunks arrive.
        yield b"token="
        for _ in range(30):
            yield b"a" * 1024 * 1024

    for path in ("/admin/login", "/admin/subscribers/import", "/admin/digests"):
        if path != "/admin/login":
            sign_in(client)  # past the sign-in check, to the body's limit
        response = client.post(
            path,
            content=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert response.status_code == 413, (path, response.status_code, response.text[:200])
        assert "too large" in response.text


def far_rows() -> list[int]:
    """Digests and articles with dates at the calendar's ends, as an older version let in."""
    ids = []
    with db.session_scope() as session:
        daily = get_by_slug(session, "daily")
        for state in (DigestState.SCHEDULED, DigestState.SENT, DigestState.PAUSED):
            for far in FAR_DATES:
                digest = Digest(
                    newsletter_id=daily.id,
                    state=state,
                    subject=f"Far {far.year}",
                    since=far,
                    until=far,
                    scheduled_for=far,
                    started_at=far,
                    finished_at=far,
                    dispatched_at=far,
                    created_at=far,
                )
                session.add(digest)
                session.flush()
                ids.append(digest.id)
    for far in FAR_DATES:
        article_id = add_article(f"Story of the year {far.year}")
        with db.session_scope() as session:
            stored = session.get(Article, article_id)
            assert stored is not None
            stored.published_at = far
            stored.fetched_at = far
    return ids


def test_far_dates_already_stored_render_on_every_page(client: TestClient) -> None:
    digest_ids = far_rows()
    sign_in(client)
    pages = [
        "/admin",
        "/admin/digests",
        "/admin/digests/new",
        "/admin/articles",
        "/admin/newsletters",
    ]
    for digest_id in digest_ids:
        pages += [
            f"/admin/digests/{digest_id}",
            f"/admin/digests/{digest_id}/progress",
            f"/admin/digests/{digest_id}/preview",
            f"/admin/digests/{digest_id}/preview/email",
            f"/digests/{digest_id}",
        ]
    for path in pages:
        response = client.get(path)
        assert response.status_code < 500, (path, response.status_code)
    for path in ["/api/articles", *(f"/api/digests/{digest_id}" for digest_id in digest_ids)]:
        response = client.get(path, headers=admin())
        assert response.status_code == 200, (path, response.status_code)


# --- item 17: the dashboard reads no body before it knows who sends it -------------------


def admin_posts(client: TestClient) -> list[str]:
    """Every dashboard route that takes a POST, with its parameters filled."""
    return sorted(
        concrete(found.path)
        for found in routes(client.app, "/admin", "POST")
        if found.path != "/admin/login"
    )


class Upload:
    """A chunked multipart body that notes whether the app read any of it."""

    def __init__(self, megabytes: int) -> None:
        self.consumed = False
        self.megabytes = megabytes

    def __iter__(self) -> Iterator[bytes]:
        self.consumed = True
        # Malformed from the first byte (no boundary): a parser would refuse it with a 400.
        yield b"not multipart at all\r\n"
        for _ in range(self.megabytes):
            yield b"x" * 1024 * 1024


@pytest.mark.parametrize("cookie", [None, "forged.cookie", "WyJub3QtYS1zZXNzaW9uIl0.bad"])
def test_posts_to_the_dashboard_without_a_session_are_refused_unread(
    client: TestClient, cookie: str | None
) -> None:
    paths = admin_posts(client)
    assert "/admin/subscribers/import" in paths and len(paths) > 10
    for path in paths:
        if cookie:
            client.cookies.set(SESSION_COOKIE, cookie, path="/admin")
        upload = Upload(megabytes=24)
        response = client.post(
            path,
            content=upload,
            headers={"Content-Type": "multipart/form-data; boundary=b"},
            follow_redirects=False,
        )
        assert response.status_code == 303, (path, response.status_code)
        assert response.headers["location"].startswith("/admin/login"), path
        assert not upload.consumed, f"{path} read the body of a post from no session"
        script = client.post(
            path,
            content=Upload(megabytes=1),
            headers={
                "Content-Type": "multipart/form-data; boundary=b",
                "Accept": "application/json",
            },
        )
        assert script.status_code == 401 and "Sign in" in script.json()["detail"], path
        client.cookies.clear()


def test_the_sign_in_form_takes_only_a_small_body(client: TestClient) -> None:
    sign_in_page = client.get("/admin/login")
    assert sign_in_page.status_code == 200
    for body in (b"token=" + b"a" * 70 * 1024, Upload(megabytes=2)):
        response = client.post(
            "/admin/login",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 413, response.text[:200]


# --- the same rule at the command line -------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        # Bytes that are not UTF-8 reach argv as lone surrogates (surrogateescape).
        ("subscribers", "add", "ana@example.com", "--name", "A\udced\udca0\udc80na"),
        ("subscribers", "add", "a\udcffb@example.com"),
        ("digest", "preview", "--since", "0001-01-01T00:00:00+14:00"),
    ],
)
def test_hostile_arguments_are_one_line_on_stderr(clean_db: str, args: tuple[str, ...]) -> None:
    result = newsletter(*args, database_url=clean_db)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-500:]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert count(Subscriber) == 0
