"""RSS and Atom ingest against a real HTTP server on loopback: text, 304s, broken feeds."""

# Chinese full-width punctuation is expected in the texts.
# ruff: noqa: RUF001

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpcore
import pytest
from sqlalchemy import delete, func, select, update

from newsletter.articles.feeds import (
    MAX_FEED_BYTES,
    FeedReport,
    fetch_configured_feeds,
    fetch_feed,
)
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Article, Feed
from tests.conftest import ROOT, free_port

FEEDS_DIR = ROOT / "tests" / "data" / "feeds"
LAST_MODIFIED = format_datetime(datetime(2026, 11, 21, 10, 0, tzinfo=UTC), usegmt=True)


@dataclass
class Route:
    """What the test server answers on one path."""

    body: bytes = b""
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    # False: a server that ignores If-None-Match / If-Modified-Since and always sends 200.
    conditional: bool = True
    delay: float = 0.0
    # Stream this many bytes of filler, without Content-Length, after the body.
    endless: int = 0
    # Answer 302 to this address.
    location: str = ""


@dataclass
class FeedServer:
    base_url: str
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def headers_seen(self, path: str) -> list[dict[str, str]]:
        return [headers for seen_path, headers in self.seen if seen_path == path]

    def serve_file(self, path: str, name: str, **options: object) -> str:
        self.routes[path] = Route(body=(FEEDS_DIR / name).read_bytes(), **options)  # type: ignore[arg-type]
        return self.url(path)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        state.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        route = state.routes.get(self.path)
        if route is None:
            self._answer(404, b"<h1>Not Found</h1>", "text/html")
            return
        if route.delay:
            time.sleep(route.delay)
        if route.location:
            self.send_response(302)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if route.conditional and route.status == 200:
            etag_matches = route.etag and self.headers.get("If-None-Match") == route.etag
            date_matches = (
                route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified
            )
            if etag_matches or date_matches:
                self.send_response(304)
                self._validators(route)
                self.end_headers()
                return
        if route.endless:
            self.send_response(200)
            self.send_header("Content-Type", route.content_type)
            self.end_headers()
            chunk = b"<!-- filler -->" * 4096
            try:
                self.wfile.write(route.body)
                for _ in range(route.endless // len(chunk) + 1):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading, as it should
            return
        self._answer(route.status, route.body, route.content_type, route)

    def _answer(
        self, status: int, body: bytes, content_type: str, route: Route | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if route is not None:
                self._validators(route)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a client that timed out has gone

    def _validators(self, route: Route) -> None:
        if route.etag:
            self.send_header("ETag", route.etag)
        if route.last_modified:
            self.send_header("Last-Modified", route.last_modified)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FeedServer


@pytest.fixture(scope="module")
def http_server() -> Iterator[FeedServer]:
    port = free_port()
    server = _Server(("127.0.0.1", port), _Handler)
    server.state = FeedServer(f"http://127.0.0.1:{port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.state
    server.shutdown()
    server.server_close()


@pytest.fixture
def feeds(
    http_server: FeedServer, clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FeedServer]:
    """The test server on loopback, with the operator's escape hatch open to reach it."""
    http_server.routes.clear()
    http_server.seen.clear()
    with reach(monkeypatch, allow_private=True, port=urlsplit(http_server.base_url).port):
        yield http_server


@contextmanager
def reach(
    monkeypatch: pytest.MonkeyPatch, *, allow_private: bool, port: int | None
) -> Iterator[None]:
    """Settings for where feeds may be fetched from: private networks or not, one more port."""
    monkeypatch.setenv("NEWSLETTER_FEED_ALLOW_PRIVATE", "true" if allow_private else "false")
    monkeypatch.setenv("NEWSLETTER_FEED_ALLOWED_PORTS", f"80,443,{port}" if port else "80,443")
    get_settings.cache_clear()
    try:
        yield
    finally:
        monkeypatch.delenv("NEWSLETTER_FEED_ALLOW_PRIVATE", raising=False)
        monkeypatch.delenv("NEWSLETTER_FEED_ALLOWED_PORTS", raising=False)
        get_settings.cache_clear()


def fetch(url: str, *, timeout: float = 5.0, now: datetime | None = None) -> FeedReport:
    with db.session_scope() as session:
        return fetch_feed(session, url, timeout=timeout, now=now)


def articles() -> list[Article]:
    with db.session_scope() as session:
        return list(session.scalars(select(Article).order_by(Article.published_at.desc())))


def article_count() -> int:
    with db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Article)) or 0)


def feed_row(url: str) -> Feed:
    with db.session_scope() as session:
        feed = session.scalar(select(Feed).where(Feed.url == url))
    assert feed is not None
    return feed


def assert_failed(report: FeedReport, *words: str) -> None:
    assert report.status == "failed"
    assert (report.imported, report.unchanged) == (0, 0)
    assert len(report.errors) == 1
    error = report.errors[0]
    assert "\n" not in error and error.strip() == error and error
    for word in words:
        assert word in error, error
    assert feed_row(report.url).last_error == error


# --- Reading entries -------------------------------------------------------------------


def test_portuguese_rss_is_imported_as_plain_text(feeds: FeedServer) -> None:
    url = feeds.serve_file("/pt.rss", "macau-pt.rss")
    report = fetch(url)
    assert report.as_dict() == {
        "url": url,
        "status": "imported",
        "imported": 2,
        "unchanged": 0,
        "errors": [],
        "warnings": [],
    }
    bridge, accord = articles()
    assert bridge.title == "Macau reabre a ponte & o trânsito volta ao normal"
    assert bridge.url == "https://plataforma.example/2026/11/ponte"
    assert bridge.body == (
        "A ponte reabriu hoje às 8h, depois de três dias fechada. O trânsito é normal.\n\n"
        'As autoridades "agradecem" a paciência dos condutores & peões.'
    )
    assert bridge.summary == (
        "A ponte reabriu hoje às 8h, depois de três dias fechada. O trânsito é normal."
    )
    # pt-BR in <language>; tags lower-cased, folded to topic names, the invalid one dropped.
    assert bridge.language == accord.language == "pt"
    assert bridge.topics == ["macau", "transportes", "politica-local"]
    assert bridge.published_at == datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    assert bridge.source == url
    # The full text comes from content:encoded; <br> is a line break, list items lines.
    assert accord.body == (
        "Os dois países assinaram um acordo de cooperação na área da educação.\n\n"
        "O acordo prevê bolsas para estudantes — cerca de 200 por ano.\n"
        "Entra em vigor em janeiro.\n\n"
        "- Bolsas de estudo\n- Formação de professores"
    )
    assert accord.summary == "Os dois países assinaram um acordo de cooperação na área da educação."
    assert accord.published_at == datetime(2026, 11, 19, 15, 30, tzinfo=UTC)
    for article in (bridge, accord):
        for markup in ("<", ">", "&amp;", "&ecirc;", "alert", "roubar", "color", "JavaScript"):
            assert markup not in article.body + article.summary + article.title


def test_chinese_atom_feed_takes_its_language_and_times(feeds: FeedServer) -> None:
    url = feeds.serve_file("/zh.atom", "china-zh.atom", content_type="application/atom+xml")
    report = fetch(url)
    assert (report.status, report.imported, report.errors) == ("imported", 2, [])
    bridge, forum = articles()
    assert bridge.title == "澳门大桥今天重新开放"
    assert bridge.language == forum.language == "zh"  # xml:lang="zh-Hans"
    assert (
        bridge.body
        == "大桥在关闭三天后于今天早上八点重新开放。交通恢复正常。\n\n当局感谢司机和行人的耐心。"
    )
    assert bridge.summary == "大桥在关闭三天后于今天早上八点重新开放。交通恢复正常。"
    assert bridge.topics == ["macau"]  # 交通 is no topic name
    assert bridge.published_at == datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
    # Without <published>, <updated> dates the entry.
    assert forum.published_at == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert forum.body == forum.summary == "论坛在澳门举行，各国代表出席。"


def test_a_feed_without_a_language_has_it_guessed(feeds: FeedServer) -> None:
    url = feeds.serve_file("/en.rss", "world-en.rss")
    assert fetch(url).imported == 1
    (trade,) = articles()
    assert trade.language == "en"
    assert trade.topics == ["trade", "angola"]
    assert trade.body == (
        "Angola and China signed a trade agreement on Wednesday. It covers oil and farming.\n\n"
        "The deal was announced in Luanda."
    )


def test_entries_that_cannot_be_stored_are_reported_and_the_rest_imported(
    feeds: FeedServer,
) -> None:
    rss = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>t</title><link>https://x.example/</link><description>d</description>
<item><description>An item without a title.</description></item>
<item><title>{"Long " * 120}</title><description>Too long a title.</description></item>
<item><title>A link that is script</title><link>javascript:alert(1)</link>
<description>The link is not taken.</description></item>
</channel></rss>"""
    feeds.routes["/mixed.rss"] = Route(body=rss.encode())
    report = fetch(feeds.url("/mixed.rss"))
    assert (report.status, report.imported) == ("imported", 1)
    assert report.errors == [
        "entry 1: it has no title",
        "entry 2: title is 599 characters long; at most 500 fit",
    ]
    (article,) = articles()
    assert article.title == "A link that is script" and article.url is None
    assert feed_row(report.url).last_error == "; ".join(report.errors)


def test_a_changed_entry_with_the_same_link_stays_one_article(feeds: FeedServer) -> None:
    url = feeds.serve_file("/en.rss", "world-en.rss", conditional=False)
    assert fetch(url).imported == 1
    fixed = feeds.routes["/en.rss"].body.replace(b"on Wednesday", b"on Wednesday morning")
    feeds.routes["/en.rss"].body = fixed
    report = fetch(url)
    assert (report.imported, report.unchanged) == (0, 1)
    assert article_count() == 1


# --- Conditional requests ----------------------------------------------------------------


def test_the_second_fetch_is_conditional_and_a_304_brings_nothing(feeds: FeedServer) -> None:
    url = feeds.serve_file("/pt.rss", "macau-pt.rss", etag='"pt-v1"', last_modified=LAST_MODIFIED)
    first = fetch(url, now=datetime(2026, 11, 21, 11, 0, tzinfo=UTC))
    assert first.imported == 2
    assert "if-none-match" not in feeds.headers_seen("/pt.rss")[0]

    second = fetch(url, now=datetime(2026, 11, 21, 12, 0, tzinfo=UTC))
    assert second.as_dict() == {
        "url": url,
        "status": "not-modified",
        "imported": 0,
        "unchanged": 0,
        "errors": [],
        "warnings": [],
    }
    sent = feeds.headers_seen("/pt.rss")[1]
    assert sent["if-none-match"] == '"pt-v1"'
    assert sent["if-modified-since"] == LAST_MODIFIED
    assert article_count() == 2
    feed = feed_row(url)
    assert (feed.etag, feed.last_modified) == ('"pt-v1"', LAST_MODIFIED)
    assert feed.last_status == "not-modified" and feed.last_error is None
    assert feed.last_fetched_at == datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_refetching_unchanged_content_without_a_304_is_idempotent(feeds: FeedServer) -> None:
    url = feeds.serve_file("/pt.rss", "macau-pt.rss", etag='"pt-v1"', conditional=False)
    assert fetch(url).imported == 2
    again = fetch(url)
    assert (again.status, again.imported, again.unchanged) == ("imported", 0, 2)
    assert feeds.headers_seen("/pt.rss")[1]["if-none-match"] == '"pt-v1"'
    assert article_count() == 2


def test_a_failure_keeps_the_validators_and_changes_nothing_else(feeds: FeedServer) -> None:
    url = feeds.serve_file("/pt.rss", "macau-pt.rss", etag='"pt-v1"', last_modified=LAST_MODIFIED)
    fetch(url)
    feeds.routes["/pt.rss"].status = 503
    assert_failed(fetch(url), "503")
    feed = feed_row(url)
    assert (feed.etag, feed.last_modified, feed.last_status) == (
        '"pt-v1"',
        LAST_MODIFIED,
        "failed",
    )
    assert article_count() == 2
    # Back to health: the validators still work, and the error is cleared.
    feeds.routes["/pt.rss"].status = 200
    assert fetch(url).status == "not-modified"
    assert feed_row(url).last_error is None


# --- Feeds that fail ---------------------------------------------------------------------


def test_a_truncated_feed_fails_with_one_line_and_no_articles(feeds: FeedServer) -> None:
    url = feeds.serve_file("/broken.rss", "truncated.rss")
    assert_failed(fetch(url), "broken")
    assert article_count() == 0


def test_an_html_page_is_not_a_feed(feeds: FeedServer) -> None:
    url = feeds.serve_file("/page", "not-a-feed.html", content_type="text/html; charset=utf-8")
    assert_failed(fetch(url), "does not serve an RSS or Atom feed")
    assert article_count() == 0


def test_a_sloppy_feed_with_entries_is_read_with_a_warning(feeds: FeedServer) -> None:
    url = feeds.serve_file("/loose.rss", "loose-en.rss")
    report = fetch(url)
    assert (report.status, report.imported, report.errors) == ("imported", 1, [])
    assert len(report.warnings) == 1 and "undefined entity" in report.warnings[0]
    (article,) = articles()
    assert article.body == "Leaders met in Lisbon on Monday to talk about the oceans."
    assert feed_row(url).last_error == report.warnings[0]


def test_a_missing_feed_fails(feeds: FeedServer) -> None:
    assert_failed(fetch(feeds.url("/nothing-here.rss")), "404", "Not Found")
    assert article_count() == 0


def test_an_oversize_feed_is_refused_without_reading_it_all(feeds: FeedServer) -> None:
    head = (FEEDS_DIR / "world-en.rss").read_bytes()
    feeds.routes["/huge.rss"] = Route(body=head[: head.index(b"</channel>")], endless=20 * 1024**2)
    started = time.monotonic()
    assert_failed(fetch(feeds.url("/huge.rss")), "larger than 5 MB")
    assert time.monotonic() - started < 10
    # A declared Content-Length over the cap is refused before the body is read.
    feeds.routes["/declared.rss"] = Route(body=b" " * (MAX_FEED_BYTES + 1))
    assert_failed(fetch(feeds.url("/declared.rss")), "larger than 5 MB")
    assert article_count() == 0


def test_a_server_slower_than_the_timeout_fails_quickly(feeds: FeedServer) -> None:
    url = feeds.serve_file("/slow.rss", "world-en.rss", delay=3.0)
    started = time.monotonic()
    assert_failed(fetch(url, timeout=0.5), "did not answer within 0.5 seconds")
    assert time.monotonic() - started < 2.5
    assert article_count() == 0


def test_a_server_that_does_not_listen_fails(
    feeds: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    with reach(monkeypatch, allow_private=True, port=port):
        assert_failed(fetch(f"http://127.0.0.1:{port}/feed.rss"), "cannot connect")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://plataforma.example/feed.rss", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("not a url", "http:// or https://"),
        ("https://plataforma.example/a feed", "spaces"),
    ],
)
def test_addresses_that_are_no_web_feeds_fail(feeds: FeedServer, url: str, words: str) -> None:
    assert_failed(fetch(url), words)


# --- Several feeds -------------------------------------------------------------------------


def test_configured_feeds_are_fetched_in_turn_and_one_failure_stops_none(
    feeds: FeedServer,
) -> None:
    pt = feeds.serve_file("/pt.rss", "macau-pt.rss")
    zh = feeds.serve_file("/zh.atom", "china-zh.atom")
    broken = feeds.serve_file("/broken.rss", "truncated.rss")
    with db.session_scope() as session:
        reports = fetch_configured_feeds(session, [pt, broken, zh, pt], timeout=5)
    assert [(r.url, r.status, r.imported) for r in reports] == [
        (pt, "imported", 2),
        (broken, "failed", 0),
        (zh, "imported", 2),
    ]
    assert article_count() == 4
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Feed)) == 3


def test_a_naive_now_is_a_programming_error(feeds: FeedServer) -> None:
    with db.session_scope() as session, pytest.raises(ValueError, match="timezone-aware"):
        fetch_feed(session, feeds.url("/x"), now=datetime(2026, 1, 1))


# --- Addresses that are not the public web (SSRF) ---------------------------------------

# A public address (example.com's) that the tests' network delivers to the test server.
PUBLIC_IP = "93.184.215.14"


@pytest.fixture
def strict(
    http_server: FeedServer, clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FeedServer]:
    """The default reach (public addresses only), with the test server's port allowed so
    that only the address decides; connections to PUBLIC_IP reach the test server."""
    http_server.routes.clear()
    http_server.seen.clear()
    port = urlsplit(http_server.base_url).port
    assert port is not None
    real_connect = httpcore.SyncBackend.connect_tcp

    def network(self: Any, host: str, *args: Any, **kwargs: Any) -> Any:
        return real_connect(self, "127.0.0.1" if host == PUBLIC_IP else host, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", network)
    with reach(monkeypatch, allow_private=False, port=port):
        yield http_server


def resolver(monkeypatch: pytest.MonkeyPatch, name: str, *answers: str) -> list[str]:
    """Make `name` resolve to each answer in turn (the last one from then on); the list
    returned fills with the answers given."""
    real = socket.getaddrinfo
    given: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        address = answers[min(len(given), len(answers) - 1)]
        given.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


def assert_refused(report: FeedReport, server: FeedServer, *words: str) -> None:
    assert_failed(report, "refused", *words)
    assert server.seen == [] or all(path != "/secret.rss" for path, _ in server.seen)
    assert article_count() == 0


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0x7f.1", "2130706433", "127.1"],
)
def test_a_feed_on_loopback_is_refused_and_nothing_stored(strict: FeedServer, host: str) -> None:
    strict.serve_file("/secret.rss", "macau-pt.rss")
    port = urlsplit(strict.base_url).port

    report = fetch(f"http://{host}:{port}/secret.rss")

    assert_refused(report, strict, "loopback", "NEWSLETTER_FEED_ALLOW_PRIVATE")
    assert strict.seen == []


def test_a_redirect_to_loopback_is_refused(strict: FeedServer) -> None:
    port = urlsplit(strict.base_url).port
    strict.serve_file("/secret.rss", "macau-pt.rss")
    strict.routes["/feed.rss"] = Route(location=f"http://127.0.0.1:{port}/secret.rss")

    report = fetch(f"http://{PUBLIC_IP}:{port}/feed.rss")

    assert_refused(report, strict, "127.0.0.1", "loopback")
    assert [path for path, _ in strict.seen] == ["/feed.rss"]


def test_a_public_feed_is_still_fetched_by_default(
    strict: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = urlsplit(strict.base_url).port
    strict.serve_file("/feed.rss", "macau-pt.rss")
    resolver_answers = resolver(monkeypatch, "feeds.example", PUBLIC_IP)

    report = fetch(f"http://feeds.example:{port}/feed.rss")

    assert report.status == "imported" and report.imported == 2, report.errors
    assert resolver_answers == [PUBLIC_IP]
    assert strict.seen[0][1]["host"] == f"feeds.example:{port}"


def test_a_name_that_resolves_to_loopback_is_refused(
    strict: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict.serve_file("/secret.rss", "macau-pt.rss")
    port = urlsplit(strict.base_url).port
    resolver(monkeypatch, "inside.example", "10.0.0.5", "127.0.0.1")

    assert_refused(fetch(f"http://inside.example:{port}/secret.rss"), strict, "10.0.0.5", "private")
    assert_refused(fetch(f"http://inside.example:{port}/secret.rss"), strict, "loopback")
    assert strict.seen == []


def test_dns_rebinding_connects_to_the_address_that_was_checked(
    strict: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name answers a public address, then 127.0.0.1 to whoever asks again: the
    connection is made to the address checked, never to the second answer."""
    strict.serve_file("/feed.rss", "macau-pt.rss")
    port = urlsplit(strict.base_url).port
    answers = resolver(monkeypatch, "rebind.example", PUBLIC_IP, "127.0.0.1")
    connected: list[str] = []
    network = httpcore.SyncBackend.connect_tcp

    def recording(self: Any, host: str, *args: Any, **kwargs: Any) -> Any:
        connected.append(host)
        return network(self, host, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", recording)

    report = fetch(f"http://rebind.example:{port}/feed.rss")

    assert answers == [PUBLIC_IP]
    assert connected == [PUBLIC_IP]
    assert report.status == "imported"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"http://{PUBLIC_IP}:8080/feed.rss", "port 8080 is not allowed"),
        (f"https://{PUBLIC_IP}:22/feed.rss", "port 22 is not allowed"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/feed.rss", "loopback"),
        ("http://[64:ff9b::7f00:1]/feed.rss", "loopback"),
        ("http://[2002:7f00:1::]/feed.rss", "loopback"),
        ("http://0.0.0.0/feed.rss", "unspecified"),
        ("http://192.168.1.1/feed.rss", "private"),
        ("http://100.64.0.1/feed.rss", "non-public"),
        ("http://240.0.0.1/feed.rss", "reserved"),
    ],
)
def test_other_addresses_and_ports_are_refused(strict: FeedServer, url: str, words: str) -> None:
    assert_refused(fetch(url), strict, words)
    assert strict.seen == []


def test_redirects_are_followed_a_bounded_number_of_times(feeds: FeedServer) -> None:
    feeds.serve_file("/moved.rss", "macau-pt.rss")
    feeds.routes["/old.rss"] = Route(location=feeds.url("/moved.rss"))
    feeds.routes["/loop.rss"] = Route(location=feeds.url("/loop.rss"))

    assert fetch(feeds.url("/old.rss")).imported == 2
    assert_failed(fetch(feeds.url("/loop.rss")), "redirects too many times")
    assert [path for path, _ in feeds.seen].count("/loop.rss") == 6  # the first ask and 5 more


# --- Translations: hreflang alternates ---------------------------------------------------


def atom(language: str, *entries: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="{language}">'
        "<title>Plataforma</title><id>urn:plataforma</id>"
        "<updated>2026-11-21T10:00:00Z</updated>" + "".join(entries) + "</feed>"
    ).encode()


def entry(title: str, own: str, *translations: tuple[str, str]) -> str:
    alternates = "".join(
        f'<link rel="alternate" hreflang="{lang}" href="{href}"/>' for lang, href in translations
    )
    return (
        f"<entry><title>{title}</title><id>urn:{own}</id>"
        "<updated>2026-11-21T09:00:00Z</updated>"
        f'<link rel="alternate" href="{own}"/>{alternates}'
        f"<summary>{title}. Texto, text.</summary></entry>"
    )


EN_BRIDGE = "https://plataforma.example/en/2026/11/bridge"
PT_BRIDGE = "https://plataforma.example/pt/2026/11/ponte"
ZH_BRIDGE = "https://plataforma.example/zh/2026/11/bridge"


def stories() -> dict[str | None, str | None]:
    return {a.url: a.story for a in articles()}


def test_translations_named_by_hreflang_share_one_story(feeds: FeedServer) -> None:
    feeds.routes["/en.atom"] = Route(
        body=atom(
            "en",
            entry("Macau reopens the bridge", EN_BRIDGE, ("pt", PT_BRIDGE), ("zh", ZH_BRIDGE)),
            entry("Lisbon trams run late", "https://plataforma.example/en/trams"),
        )
    )
    feeds.routes["/pt.atom"] = Route(
        body=atom("pt", entry("Macau reabre a ponte", PT_BRIDGE, ("en", EN_BRIDGE)))
    )
    assert fetch(feeds.url("/en.atom")).imported == 2
    assert fetch(feeds.url("/pt.atom")).imported == 1

    found = stories()
    # The entry's own link, not feedparser's last alternate (the Chinese translation's).
    assert set(found) == {EN_BRIDGE, PT_BRIDGE, "https://plataforma.example/en/trams"}
    assert found[EN_BRIDGE] == found[PT_BRIDGE]
    assert found[EN_BRIDGE] is not None and found[EN_BRIDGE].startswith("feed-")
    assert found["https://plataforma.example/en/trams"] is None


def test_each_version_alone_derives_the_same_story(feeds: FeedServer) -> None:
    feeds.routes["/zh.atom"] = Route(
        body=atom(
            "zh", entry("澳门大桥今天重新开放", ZH_BRIDGE, ("en", EN_BRIDGE), ("pt", PT_BRIDGE))
        )
    )
    assert fetch(feeds.url("/zh.atom")).imported == 1
    with db.session_scope() as session:
        zh_story = session.scalar(select(Article.story).where(Article.url == ZH_BRIDGE))
        session.execute(delete(Article))
    feeds.routes["/en.atom"] = Route(
        body=atom("en", entry("Macau reopens", EN_BRIDGE, ("zh", ZH_BRIDGE), ("pt", PT_BRIDGE)))
    )
    assert fetch(feeds.url("/en.atom")).imported == 1
    assert stories() == {EN_BRIDGE: zh_story}


def test_a_translation_takes_the_key_of_a_version_already_stored(feeds: FeedServer) -> None:
    # The English version came first from a feed that named no translation.
    feeds.routes["/en.atom"] = Route(body=atom("en", entry("Macau reopens", EN_BRIDGE)))
    feeds.routes["/pt.atom"] = Route(
        body=atom("pt", entry("Macau reabre a ponte", PT_BRIDGE, ("en", EN_BRIDGE)))
    )
    feeds.routes["/zh.atom"] = Route(
        body=atom("zh", entry("澳门大桥今天重新开放", ZH_BRIDGE, ("en", EN_BRIDGE)))
    )
    assert fetch(feeds.url("/en.atom")).imported == 1
    assert stories() == {EN_BRIDGE: None}
    with db.session_scope() as session:
        english = session.scalar(select(Article).where(Article.url == EN_BRIDGE))
        assert english is not None
        english.story = "macau-bridge"  # as an editor would set it
    assert fetch(feeds.url("/pt.atom")).imported == 1
    assert stories() == {EN_BRIDGE: "macau-bridge", PT_BRIDGE: "macau-bridge"}

    # Untied again: the next translation ties the stored version to its own key.
    with db.session_scope() as session:
        session.execute(update(Article).values(story=None))
    assert fetch(feeds.url("/zh.atom")).imported == 1
    found = stories()
    assert found[EN_BRIDGE] == found[ZH_BRIDGE] is not None
    assert found[PT_BRIDGE] is None


def test_a_feed_cannot_pull_another_sites_article_into_its_story(feeds: FeedServer) -> None:
    # An editor's story, from the publisher's own site.
    feeds.routes["/en.atom"] = Route(body=atom("en", entry("Macau reopens", EN_BRIDGE)))
    assert fetch(feeds.url("/en.atom")).imported == 1
    with db.session_scope() as session:
        english = session.scalar(select(Article).where(Article.url == EN_BRIDGE))
        assert english is not None
        english.story = "macau-bridge"
    # Another site's feed names that article as its entry's translation.
    elsewhere = "https://elsewhere.example/pt/ponte"
    feeds.routes["/other.atom"] = Route(
        body=atom("pt", entry("Outra ponte", elsewhere, ("en", EN_BRIDGE)))
    )
    assert fetch(feeds.url("/other.atom")).imported == 1

    found = stories()
    assert found[EN_BRIDGE] == "macau-bridge"
    assert found[elsewhere] != "macau-bridge"
