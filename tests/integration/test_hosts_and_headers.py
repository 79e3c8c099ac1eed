"""The web app's outer doors: the Host names it answers to, the API docs in production,
and the headers that keep readers' pages from being framed, scripted or leaking links."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from newsletter.core.config import Settings, get_settings
from newsletter.core.tokens import Purpose
from newsletter.web.app import create_app
from newsletter.web.reader import ZONE_SCRIPT_SOURCE
from tests.factories import add_article, add_reader, link_token
from tests.fakes import RecordingQueue


@pytest.fixture
def client(clean_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(queue=RecordingQueue()), base_url="http://testserver") as client:
        yield client


def test_by_default_only_the_base_urls_host_and_loopback_are_answered() -> None:
    settings = Settings(base_url="https://news.example.org/", allowed_hosts="")
    assert settings.allowed_host_list == ["news.example.org", "localhost", "127.0.0.1", "[::1]"]
    listed = Settings(allowed_hosts="News.Example.org, *.example.net,::1")
    assert listed.allowed_host_list == ["news.example.org", "*.example.net", "[::1]"]


@pytest.mark.parametrize("path", ["/", "/admin", "/admin/login", "/healthz", "/api/articles"])
def test_a_host_header_not_ours_is_refused_and_never_reflected(
    client: TestClient, path: str
) -> None:
    response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 400
    assert "evil.example" not in response.text
    assert "evil.example" not in response.headers.get("location", "")
    # The names of the test settings (and loopback) are still answered.
    for host in ("testserver", "127.0.0.1:8000", "[::1]:8000", "newsletter.test"):
        assert client.get(path, headers={"Host": host}, follow_redirects=False).status_code < 500
        assert client.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    ("environment", "api_docs", "served"),
    [
        ("production", None, False),
        ("prod", None, False),
        ("production", True, True),
        ("development", None, True),
        ("development", False, False),
    ],
)
def test_the_api_docs_are_off_in_production_unless_asked_for(
    clean_db: str, monkeypatch: pytest.MonkeyPatch, environment: str, api_docs: Any, served: bool
) -> None:
    settings = get_settings()
    monkeypatch.setitem(settings.__dict__, "environment", environment)
    monkeypatch.setitem(settings.__dict__, "api_docs", api_docs)
    with TestClient(create_app(queue=RecordingQueue())) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (client.get(path).status_code == 200) is served, path
        assert client.get("/").status_code == 200


def test_readers_pages_are_framed_nowhere_run_one_known_script_and_send_no_referrer(
    client: TestClient,
) -> None:
    reader = add_reader("ana@example.com")
    add_article("A story worth reading")
    pages = [
        "/",
        f"/preferences/{link_token(Purpose.PREFERENCES, reader)}",
        f"/unsubscribe/{link_token(Purpose.UNSUBSCRIBE, reader)}",
        "/articles/a-story-worth-reading",
        "/confirm/not-a-token",
        "/no-such-page",
    ]
    for path in pages:
        response = client.get(path)
        assert response.status_code < 500, path
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, path
        # No script but the signup form's zone guess, allowed by its hash alone.
        assert f"script-src {ZONE_SCRIPT_SOURCE};" in policy, path
        assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0], path
        assert response.headers["referrer-policy"] == "no-referrer", path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
    # The dashboard keeps its own policy (it frames its own previews).
    assert "frame-ancestors 'self'" in client.get("/admin/login").headers["content-security-policy"]


def test_head_is_answered_wherever_get_is_without_a_body(client: TestClient) -> None:
    """Link scanners and uptime checks ask HEAD: the GET's status and headers, no body."""
    reader = add_reader("ana@example.com")
    add_article("A story worth reading")
    token = link_token(Purpose.PREFERENCES, reader)
    for path, status in [
        ("/", 200),
        ("/healthz", 200),
        (f"/preferences/{token}", 200),
        ("/unsubscribe/not-a-token", 400),
        ("/articles/no-such-story", 404),
        ("/favicon.ico", 200),
        ("/robots.txt", 200),
    ]:
        got, head = client.get(path), client.head(path)
        assert (head.status_code, got.status_code) == (status, status), path
        assert head.content == b"" and got.content, path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers.get("content-security-policy") == got.headers.get(
            "content-security-policy"
        ), path
    # A HEAD never does what only a POST does.
    assert client.head("/subscribe").status_code == 405


def test_a_link_checkers_head_confirms_nobody(client: TestClient) -> None:
    from newsletter.core import db
    from newsletter.core.models import Subscription

    reader = add_reader("pending@example.com", confirmed=False)
    link = f"/confirm/{link_token(Purpose.CONFIRM, reader)}"

    def status() -> str:
        with db.session_scope() as session:
            return session.query(Subscription).filter_by(subscriber_id=reader).one().status

    assert client.head(link).status_code == 200
    assert status() == "pending"
    assert client.get(link).status_code == 200  # the reader's own visit
    assert status() == "subscribed"


def test_the_site_has_an_icon_and_keeps_crawlers_off_the_readers_links(
    client: TestClient,
) -> None:
    icon = client.get("/favicon.ico")
    assert icon.headers["content-type"] == "image/svg+xml" and icon.content.startswith(b"<svg")
    assert 'rel="icon" href="/favicon.svg"' in client.get("/").text
    robots = client.get("/robots.txt").text.splitlines()
    for path in ("/confirm/", "/unsubscribe/", "/preferences/", "/r/", "/admin"):
        assert f"Disallow: {path}" in robots
