"""RSS and Atom ingest: fetch feeds with conditional requests and store their entries."""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import urlsplit

import feedparser  # type: ignore[import-untyped]
import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.articles.store import (
    CONTROL_CHARS,
    URL_MAX_CHARS,
    ArticleParseError,
    ParsedArticle,
    guess_language,
    lede_summary,
    store_article,
)
from newsletter.core import clock, public_web
from newsletter.core.config import LANGUAGES, get_settings
from newsletter.core.models import Article, Feed
from newsletter.core.validation import MAX_TOPICS, InvalidInput, clean_topics

MAX_FEED_BYTES = 5 * 1024 * 1024
# Columns of the feeds table: a validator too long to keep is not kept at all, since a
# shortened one would never match.
ETAG_MAX_CHARS = 500
LAST_MODIFIED_MAX_CHARS = 100
LAST_ERROR_MAX_CHARS = 2000

USER_AGENT = "newsletter/0.1 (RSS and Atom reader)"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)

FeedStatus = Literal["imported", "not-modified", "failed"]


@dataclass
class FeedReport:
    """What one fetch of a feed did: its entries imported or already there, its problems.

    errors are one line each: why the feed failed, or which entries could not be stored.
    warnings say what was odd about a feed that was still read (not well-formed XML).
    """

    url: str
    status: FeedStatus
    imported: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }


def fetch_feed(
    session: Session, url: str, *, timeout: float = 20.0, now: datetime | None = None
) -> FeedReport:
    """Fetch one feed (conditionally) and store its new entries as articles.

    A feed that cannot be fetched or read is reported as failed, with the reason on its
    Feed row; nothing else changes. The session is flushed, not committed.
    """
    return fetch_configured_feeds(session, [url], timeout=timeout, now=now)[0]


def fetch_configured_feeds(
    session: Session,
    urls: Sequence[str],
    *,
    timeout: float = 20.0,
    now: datetime | None = None,
) -> list[FeedReport]:
    """Fetch each feed once, in order, and store their new entries; one report per feed.

    Every feed is downloaded before anything is written: on SQLite a write holds the
    database's only write lock until commit, and it must not wait on slow servers.
    """
    if now is not None and now.tzinfo is None:
        raise ValueError("a timezone-aware datetime is needed, got a naive one")
    now = now.astimezone(UTC) if now is not None else datetime.now(UTC)
    unique_urls = list(dict.fromkeys(url.strip() for url in urls))
    downloads = []
    for url in unique_urls:
        feed = _feed_row(session, url)
        etag, last_modified = (feed.etag, feed.last_modified) if feed else (None, None)
        downloads.append(_download(url, etag=etag, last_modified=last_modified, timeout=timeout))
    return [_record(session, download, now=now) for download in downloads]


def html_to_text(html: str) -> str:
    """The text a reader sees in an HTML fragment: paragraphs apart by a blank line.

    Tags go, entities are unescaped, and what script, style and the like contain is
    dropped whole; <br> is a line break, list items are "- item" lines, and runs of
    spaces (non-breaking ones too) are one space.
    """
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    return "\n\n".join(extractor.paragraphs())


# --- Download --------------------------------------------------------------------------


@dataclass
class _Download:
    url: str
    status: FeedStatus
    error: str = ""
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None


def _feed_row(session: Session, url: str) -> Feed | None:
    return session.scalar(select(Feed).where(Feed.url == url))


def _download(
    url: str, *, etag: str | None, last_modified: str | None, timeout: float
) -> _Download:
    """GET the feed, conditionally; never raises for what the network or server does."""
    problem = _url_problem(url)
    if problem:
        return _Download(url, "failed", problem)
    headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    # httpx's timeout bounds each connect and read; a server that trickles bytes could
    # still hold us for ever, so the whole download has a deadline too.
    deadline = time.monotonic() + timeout
    reach = _reach()
    try:
        with public_web.public_client(reach, timeout=timeout, headers=headers) as client:
            request = client.build_request("GET", url)
            with public_web.send_following(client, request, reach) as response:
                return _read_response(url, response, deadline=deadline, timeout=timeout)
    except public_web.AddressRefused as exc:
        return _Download(url, "failed", _refused(str(exc)))
    except httpx.TimeoutException:
        return _Download(url, "failed", _timed_out(timeout))
    except httpx.ConnectError as exc:
        if isinstance(exc.__cause__, public_web.AddressRefusedAtConnect):
            return _Download(url, "failed", _refused(str(exc)))
        return _Download(url, "failed", f"cannot connect to the server ({_describe(exc)})")
    except httpx.TooManyRedirects:
        return _Download(url, "failed", "the server redirects too many times")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return _Download(url, "failed", f"the download failed ({_describe(exc)})")


def _read_response(
    url: str, response: httpx.Response, *, deadline: float, timeout: float
) -> _Download:
    """What the server's (streamed) answer brings: a feed, a 304, or why not."""
    etag = _header(response, "etag", ETAG_MAX_CHARS)
    last_modified = _header(response, "last-modified", LAST_MODIFIED_MAX_CHARS)
    if response.status_code == 304:
        return _Download(url, "not-modified", etag=etag, last_modified=last_modified)
    if response.status_code >= 400:
        reason = response.reason_phrase or "error"
        return _Download(
            url, "failed", f"the server answered HTTP {response.status_code} ({reason})"
        )
    if response.status_code != 200:
        return _Download(
            url, "failed", f"the server answered HTTP {response.status_code}, not a feed"
        )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FEED_BYTES:
        return _Download(url, "failed", _too_large())
    chunks: list[bytes] = []
    size = 0
    # iter_bytes decompresses: counting what it yields caps gzip bombs as well.
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_FEED_BYTES:
            return _Download(url, "failed", _too_large())
        if time.monotonic() > deadline:
            return _Download(url, "failed", _timed_out(timeout))
        chunks.append(chunk)
    return _Download(
        url,
        "imported",
        content=b"".join(chunks),
        headers={
            name: response.headers[name]
            for name in ("content-type", "content-language")
            if name in response.headers
        }
        | {"content-location": str(response.url)},
        etag=etag,
        last_modified=last_modified,
    )


def _reach() -> public_web.Reach:
    settings = get_settings()
    return public_web.Reach(
        allowed_ports=frozenset(settings.feed_allowed_ports),
        allow_private=settings.feed_allow_private,
    )


def _refused(reason: str) -> str:
    return f"the feed address is refused: {reason}"


def _url_problem(url: str) -> str:
    if not url:
        return "no feed address given"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the feed address is not a valid URL"
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return "the feed address must be an http:// or https:// URL"
    if len(url) > URL_MAX_CHARS:
        return f"the feed address is longer than {URL_MAX_CHARS} characters"
    if any(ch.isspace() for ch in url):
        return "the feed address contains spaces"
    return ""


def _header(response: httpx.Response, name: str, max_chars: int) -> str | None:
    value = response.headers.get(name, "").strip()
    return value if value and len(value) <= max_chars else None


def _too_large() -> str:
    return f"the feed is larger than {MAX_FEED_BYTES // (1024 * 1024)} MB and was not read"


def _timed_out(timeout: float) -> str:
    return f"the server did not answer within {timeout:g} seconds"


def _describe(exc: Exception) -> str:
    return _one_line(str(exc)) or type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- Reading and storing ---------------------------------------------------------------


def _record(session: Session, download: _Download, *, now: datetime) -> FeedReport:
    """Store what a download brought and note the outcome on the feed's row."""
    report = FeedReport(download.url, download.status)
    if download.status == "failed":
        report.errors.append(download.error)
    elif download.status == "imported":
        entries, problem, warning = _read_feed(download)
        if problem:
            report.status = "failed"
            report.errors.append(problem)
        else:
            if warning:
                report.warnings.append(warning)
            _store_entries(session, entries, report, now=now)
    if len(download.url) <= URL_MAX_CHARS and download.url:
        _note_on_feed(session, download, report, now=now)
    return report


@dataclass(frozen=True)
class _Entry:
    """A feed entry as an article, and the addresses of its translations (hreflang)."""

    article: ParsedArticle
    translations: tuple[str, ...] = ()


def _read_feed(download: _Download) -> tuple[list[_Entry | str], str, str]:
    """(entries as articles or one-line problems, why the feed is unusable, a warning)."""
    try:
        parsed: Any = feedparser.parse(download.content, response_headers=download.headers)
    except Exception as exc:
        # A third-party parser meets untrusted bytes here: whatever it trips on is a
        # fault of the feed, and must not stop the other feeds of the tick.
        return [], f"the feed cannot be read ({type(exc).__name__}: {_describe(exc)})", ""
    entries: list[Any] = list(parsed.get("entries") or [])
    trouble = _describe(parsed["bozo_exception"]) if parsed.get("bozo") else ""
    if not entries:
        detail = f" ({trouble})" if trouble else ""
        if not parsed.get("version"):
            return [], f"the address does not serve an RSS or Atom feed{detail}", ""
        if trouble:
            return [], f"the feed is broken and has no entries that can be read{detail}", ""
        return [], "", ""
    warning = f"the feed has flaws ({trouble}); its entries were read anyway"
    feed_info: Any = parsed.get("feed") or {}
    declared = download.headers.get("content-language")
    feed_language = feed_info.get("language") or declared
    items = [_entry_article(entry, download.url, feed_language) for entry in entries]
    return items, "", warning if trouble else ""


def _store_entries(
    session: Session, entries: list[_Entry | str], report: FeedReport, *, now: datetime
) -> None:
    for number, entry in enumerate(entries, start=1):
        if isinstance(entry, str):
            report.errors.append(f"entry {number}: {entry}")
            continue
        item = _with_story(session, entry)
        # A feed re-publishes an entry after fixing a typo: the same link stays one
        # article, or the next digest would carry the story twice.
        if item.url is not None and session.scalar(
            select(Article.id).where(Article.url == item.url).limit(1)
        ):
            report.unchanged += 1
            continue
        try:
            _article, created = store_article(session, item, now=now)
        except ArticleParseError as exc:
            problem = str(exc).removeprefix(f"{item.source}: ")
            report.errors.append(f"entry {number}: {problem}")
            continue
        if created:
            report.imported += 1
        else:
            report.unchanged += 1


def _note_on_feed(
    session: Session, download: _Download, report: FeedReport, *, now: datetime
) -> None:
    feed = _feed_row(session, download.url)
    if feed is None:
        feed = Feed(url=download.url, created_at=now)
        session.add(feed)
    feed.last_fetched_at = now
    feed.last_status = report.status
    problems = report.errors + report.warnings
    feed.last_error = "; ".join(problems)[:LAST_ERROR_MAX_CHARS] if problems else None
    # Validators are kept only from a response that was read: after a failure the next
    # fetch must ask for the whole feed again.
    if report.status != "failed":
        if download.etag is not None or report.status == "imported":
            feed.etag = download.etag
        if download.last_modified is not None or report.status == "imported":
            feed.last_modified = download.last_modified
    session.flush()


def _with_story(session: Session, entry: _Entry) -> ParsedArticle:
    """The entry's article, with the story key its translations already stored carry.

    Versions stored without a key (before their other versions were known, this entry's
    own earlier copy too) are tied to the entry's key now.
    """
    if not entry.translations:
        return entry.article
    urls = [*entry.translations, *([entry.article.url] if entry.article.url else [])]
    # A feed speaks for its own site only: an alternate on another host names someone
    # else's article, which must not be pulled into this feed's story (nor lend it a key).
    site = _host(entry.article.url or entry.article.source)
    known = [
        article
        for article in session.scalars(select(Article).where(Article.url.in_(urls)))
        if _host(article.url) == site
    ]
    story = next((a.story for a in known if a.story), entry.article.story)
    for translation in known:
        if translation.story is None:
            translation.story = story
    return dataclasses.replace(entry.article, story=story)


def _host(url: str | None) -> str:
    return (urlsplit(url or "").hostname or "").lower()


def _entry_article(entry: Any, source: str, feed_language: str | None) -> _Entry | str:
    """One feed entry as an article to store, or a one-line reason why it cannot be."""
    title = _clean(_detail_text(entry.get("title_detail"), entry.get("title")))
    title = _one_line(title)
    if not title:
        return "it has no title"
    summary_text = _clean(_detail_text(entry.get("summary_detail"), entry.get("summary")))
    content = _main_content(entry.get("content"))
    body_text = _clean(_detail_text(content, None)) if content is not None else summary_text
    body_paragraphs = _paragraphs(body_text)
    summary_paragraphs = _paragraphs(summary_text) or body_paragraphs
    language = _declared_language(entry, content, feed_language) or guess_language(
        title, "\n\n".join(body_paragraphs)
    )
    url, translations = _entry_links(entry, language)
    article = ParsedArticle(
        title=title,
        body="\n\n".join(body_paragraphs),
        summary=lede_summary(summary_paragraphs),
        url=url,
        language=language,
        topics=_entry_topics(entry.get("tags")),
        published_at=_entry_time(entry),
        source=source,
        story=_derived_story(url, translations),
    )
    return _Entry(article, translations)


def _entry_links(entry: Any, language: str) -> tuple[str | None, tuple[str, ...]]:
    """The entry's own address, and those of its translations: the alternate links whose
    hreflang names another language (<link rel="alternate" hreflang="pt" href="...">).

    feedparser's entry.link is the last alternate link, which may be a translation's.
    """
    own: str | None = None
    translations: list[str] = []
    alternates = [
        link for link in entry.get("links") or [] if link.get("rel", "alternate") == "alternate"
    ]
    for link in alternates:
        url = _entry_url(link.get("href"))
        if url is None:
            continue
        hreflang = link.get("hreflang")
        other = isinstance(hreflang, str) and _language_of(hreflang) != language
        if other and url not in translations:
            translations.append(url)
        elif not other and own is None:
            own = url
    if own is None and not translations:
        own = _entry_url(entry.get("link"))
    return own, tuple(t for t in translations if t != own)


def _derived_story(url: str | None, translations: Sequence[str]) -> str | None:
    """A story key every version of the entry computes alike: from the smallest of the
    addresses (its own and its translations'), which each version lists."""
    if not translations:
        return None
    smallest = min([url, *translations] if url else translations)
    return "feed-" + hashlib.sha256(smallest.encode("utf-8")).hexdigest()[:24]


def _language_of(tag: str) -> str:
    # pt-BR, zh-Hans: the newsletter knows languages, not regions or scripts.
    return re.split(r"[-_]", tag.strip().casefold(), maxsplit=1)[0]


_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})


def _detail_text(detail: Any, fallback: Any) -> str:
    """The text of a feedparser detail ({type, value, language}); HTML becomes text."""
    if detail is not None and isinstance(detail.get("value"), str):
        value: str = detail["value"]
        return html_to_text(value) if detail.get("type") in _HTML_TYPES else value
    return fallback if isinstance(fallback, str) else ""


def _main_content(contents: Any) -> Any:
    """The entry's full text: its HTML version when it offers several."""
    if not contents:
        return None
    for content in contents:
        if content.get("type") in _HTML_TYPES:
            return content
    return contents[0]


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return CONTROL_CHARS.sub("", unicodedata.normalize("NFC", text))


def _paragraphs(text: str) -> list[str]:
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [_one_line(line) for line in block.split("\n")]
        kept = "\n".join(line for line in lines if line)
        if kept:
            paragraphs.append(kept)
    return paragraphs


def _declared_language(entry: Any, content: Any, feed_language: str | None) -> str | None:
    """The language the feed declares for the entry, if it is one the newsletter offers."""
    candidates = [
        entry.get("language"),
        content.get("language") if content is not None else None,
        (entry.get("summary_detail") or {}).get("language"),
        (entry.get("title_detail") or {}).get("language"),
        feed_language,
    ]
    declared = next((c for c in candidates if isinstance(c, str) and c.strip()), None)
    if declared is None:
        return None
    language = _language_of(declared)
    return language if language in LANGUAGES else None


def _entry_url(link: Any) -> str | None:
    if not isinstance(link, str):
        return None
    url = link.strip()
    # The link becomes an href in every digest: only web addresses are taken.
    return None if _url_problem(url) else url


def _entry_topics(tags: Any) -> list[str]:
    topics: list[str] = []
    for tag in tags or []:
        term = tag.get("term") or tag.get("label")
        if not isinstance(term, str):
            continue
        # Topic names are ASCII words with dashes ("Política Local" → "politica-local").
        folded = unicodedata.normalize("NFKD", _one_line(term).casefold())
        name = "".join(ch for ch in folded if not unicodedata.combining(ch)).replace(" ", "-")
        try:
            cleaned = clean_topics([name])
        except InvalidInput:
            continue
        for topic in cleaned:
            if topic not in topics and len(topics) < MAX_TOPICS:
                topics.append(topic)
    return topics


def _entry_time(entry: Any) -> datetime | None:
    # feedparser gives times as UTC struct_time, whatever offset the feed wrote.
    for key in ("published_parsed", "updated_parsed"):
        value = entry.get(key)
        if value is None:
            continue
        try:
            moment = datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
        except (OverflowError, ValueError, OSError, TypeError):
            continue
        # Outside the clock's years (a feed dated year 1 or 9999) the time is not believed.
        if clock.FIRST_YEAR <= moment.year <= clock.LAST_YEAR:
            return moment
    return None


# --- HTML to text ----------------------------------------------------------------------

# Elements whose content is not text for a reader.
_SKIPPED = frozenset(
    {"script", "style", "noscript", "template", "iframe", "object", "svg", "math", "head"}
)
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt",
        "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
        "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tr", "ul",
    }
)  # fmt: skip
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._skipping: list[str] = []
        self._pre = 0
        self._lists: list[list[int]] = []  # per open list: [next number], or [] for <ul>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag in _SKIPPED:
                self._skipping.append(tag)
            return
        if tag in _SKIPPED:
            self._skipping.append(tag)
        elif tag == "br":
            self._out.append("\n")
        elif tag == "li":
            self._out.append("\n")
            numbering = self._lists[-1] if self._lists else []
            if numbering:
                self._out.append(f"{numbering[0]}. ")
                numbering[0] += 1
            else:
                self._out.append("- ")
        elif tag in _BLOCKS:
            self._out.append("\n\n")
            if tag == "pre":
                self._pre += 1
            elif tag == "ul":
                self._lists.append([])
            elif tag == "ol":
                self._lists.append([1])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
            return
        if tag in _BLOCKS:
            self._out.append("\n\n")
            if tag == "pre" and self._pre:
                self._pre -= 1
            elif tag in {"ul", "ol"} and self._lists:
                self._lists.pop()

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        # Outside <pre>, line breaks in HTML source are spaces to a reader.
        self._out.append(data if self._pre else re.sub(r"\s+", " ", data))

    def paragraphs(self) -> list[str]:
        return _paragraphs("".join(self._out))
