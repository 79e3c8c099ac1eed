"""Article ingest and query: scraped pages and Markdown files in, stored articles out."""

# Typographic and full-width punctuation (curly quotes, 。 and the like) is matched on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import hashlib
import re
import threading
import time as monotonic_clock
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from sqlalchemy import event, func, or_, select
from sqlalchemy.orm import Session

from newsletter.core import clock
from newsletter.core.config import LANGUAGES
from newsletter.core.models import Article
from newsletter.core.validation import InvalidInput

SUMMARY_MAX_CHARS = 300
# Column sizes of the articles table.
TITLE_MAX_CHARS = 500
URL_MAX_CHARS = 2000
SOURCE_MAX_CHARS = 500
SLUG_MAX_CHARS = 80

ARTICLE_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
FRONT_MATTER_KEYS = ("title", "url", "published_at", "language", "topics", "summary", "story")
STORY_MAX_CHARS = 100
# The editor's priority: higher comes first in a digest.
# Front matter is six flat keys; a list in a list is already unusual.
MAX_FRONT_MATTER_DEPTH = 50
MIN_PRIORITY = -1000
MAX_PRIORITY = 1000


class UnknownArticle(LookupError):
    pass


class ArticleParseError(ValueError):
    """A file or text that cannot become an article; the message is one line naming it."""


@dataclass(frozen=True)
class ParsedArticle:
    """An article as read from a file, before it is stored."""

    title: str
    body: str
    summary: str
    url: str | None
    language: str
    topics: list[str]
    published_at: datetime | None
    source: str
    # The story the article is a version of (translations share it); None: its own story.
    story: str | None = None


@dataclass
class ImportReport:
    """What an import did, file by file: paths imported or unchanged, one-line errors."""

    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_article_file(path: Path) -> ParsedArticle:
    """Read one article file: Markdown with front matter, or the text of a scraped page."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _error(source, "no such file") from None
    except IsADirectoryError:
        raise _error(source, "is a directory, not an article file") from None
    except OSError as exc:
        raise _error(source, f"cannot be read ({exc.strerror or exc})") from None
    return parse_article_bytes(raw, source=source)


def parse_article_bytes(raw: bytes, *, source: str) -> ParsedArticle:
    """Read one article from a file's bytes; source names the file (its suffix says Markdown)."""
    text = _decode(raw, source)
    if Path(source).suffix.lower() in MARKDOWN_SUFFIXES or _starts_with_front_matter(text):
        return parse_markdown(text, source=source)
    return parse_scraped_text(text, source=source)


def parse_scraped_text(text: str, *, source: str) -> ParsedArticle:
    """Parse the text of a scraped page: breadcrumb, title, paragraphs, then site chrome."""
    paragraphs = _split_paragraphs(_clean_text(text, source))
    title, body_paragraphs = _take_title(paragraphs)
    if title is None:
        raise _error(source, "no title found (the text is empty or is not an article)")
    title = _check_title(title, source)
    body_paragraphs = _drop_trailing_chrome(body_paragraphs)
    body = "\n\n".join(body_paragraphs)
    return ParsedArticle(
        title=title,
        body=body,
        summary=lede_summary(body_paragraphs),
        url=None,
        language=guess_language(title, body),
        topics=[],
        published_at=None,
        source=source,
    )


def parse_markdown(text: str, *, source: str) -> ParsedArticle:
    """Parse Markdown with optional YAML front matter into a plain-text article."""
    text = _clean_text(text, source)
    meta, markdown = _split_front_matter(text, source)
    unknown = sorted(set(meta) - set(FRONT_MATTER_KEYS))
    if unknown:
        raise _error(
            source,
            f"unknown front matter key(s) {', '.join(unknown)} "
            f"(expected {', '.join(FRONT_MATTER_KEYS)})",
        )
    blocks = _markdown_blocks(markdown)

    title = _collapse(_text_field(meta, "title", source))
    if title:
        # An editor often repeats the title as the first heading; keep it once.
        if blocks and blocks[0].heading and _same_title(blocks[0].text, title):
            blocks = blocks[1:]
    else:
        heading = next((b for b in blocks if b.heading == 1), None)
        if heading is None:
            raise _error(source, "no title: give 'title:' in the front matter or a '# heading'")
        title = heading.text
        blocks = [b for b in blocks if b is not heading]
    title = _check_title(title, source)

    body_paragraphs = [b.text for b in blocks]
    body = "\n\n".join(body_paragraphs)
    summary = _collapse(_inline_markdown(_text_field(meta, "summary", source)))
    language = _language_field(meta, source) or guess_language(title, body)
    return ParsedArticle(
        title=title,
        body=body,
        summary=summary or lede_summary(body_paragraphs),
        url=_url_field(meta, source),
        language=language,
        topics=_topics_field(meta, source),
        published_at=_published_at_field(meta, source),
        source=source,
        story=_story_field(meta, source),
    )


_STORY = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def clean_story(value: str | None) -> str | None:
    """A story key as an editor types it ("macau-bridge"), lower-cased; None when blank.

    Raises InvalidInput: a key is a short slug (letters, digits, single dashes), so that
    it never looks like the key of an article that is its own story ("article:12").
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("story", "The story must be text, such as macau-bridge.")
    story = value.strip().lower()
    if not story:
        return None
    if len(story) > STORY_MAX_CHARS or not _STORY.fullmatch(story):
        raise InvalidInput(
            "story",
            f"The story {value[:40]!r} is not a story key: use lower-case letters and digits "
            f"joined by single dashes, at most {STORY_MAX_CHARS} characters, "
            "such as macau-bridge.",
        )
    return story


def story_key(article: Article) -> str:
    """The story an article tells: its key, or for an article without one, itself alone."""
    return article.story or f"article:{article.id}"


def store_article(
    session: Session, parsed: ParsedArticle, *, now: datetime | None = None
) -> tuple[Article, bool]:
    """Store an article once: the same content again returns the stored row, unchanged.

    Returns (article, created). An article without a publication time is dated now, the
    time of its first import. The session is flushed, not committed.
    """
    now = _aware_utc(now) if now is not None else datetime.now(UTC)
    _check_storable(parsed)
    fingerprint = content_hash(parsed)
    existing = session.scalar(select(Article).where(Article.content_hash == fingerprint))
    if existing is not None:
        return existing, False
    article = Article(
        slug=_unique_slug(session, _slugify(parsed.title)),
        title=parsed.title,
        summary=parsed.summary,
        body=parsed.body,
        url=parsed.url,
        language=parsed.language,
        topics=list(parsed.topics),
        published_at=_aware_utc(parsed.published_at) if parsed.published_at is not None else now,
        # Keep the end of a long path: it names the file.
        source=parsed.source[-SOURCE_MAX_CHARS:],
        content_hash=fingerprint,
        priority=0,
        hidden=False,
        created_at=now,
        story=parsed.story,
    )
    session.add(article)
    session.flush()
    _topics_changed(session)
    return article, True


def import_paths(
    session: Session, paths: Sequence[Path], *, now: datetime | None = None
) -> ImportReport:
    """Import files and folders (recursively: *.txt, *.md, *.markdown, in sorted order).

    A file that cannot be read or parsed is reported in errors; the others are still
    imported. The session is flushed, not committed.
    """
    now = _aware_utc(now) if now is not None else datetime.now(UTC)
    report = ImportReport()
    for path, problem in _article_files(paths):
        if problem is not None:
            report.errors.append(problem)
            continue
        try:
            _article, created = store_article(session, parse_article_file(path), now=now)
        except ArticleParseError as exc:
            report.errors.append(str(exc))
            continue
        (report.imported if created else report.unchanged).append(str(path))
    return report


def list_articles(
    session: Session,
    *,
    limit: int = 100,
    include_hidden: bool = False,
    offset: int = 0,
    story: str | None = None,
) -> list[Article]:
    """The newest articles first (by publication time), skipping the first `offset`;
    with `story`, only the versions of that story."""
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must not be negative, got {limit} and {offset}")
    query = (
        select(Article)
        .order_by(Article.published_at.desc(), Article.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if not include_hidden:
        query = query.where(Article.hidden.is_(False))
    if story is not None:
        query = query.where(Article.story == story)
    return list(session.scalars(query))


def count_articles(session: Session, *, include_hidden: bool = False) -> int:
    query = select(func.count()).select_from(Article)
    if not include_hidden:
        query = query.where(Article.hidden.is_(False))
    return int(session.scalar(query) or 0)


# The topics offered on the signup and preferences pages are kept a short while in each
# process: reading them means reading every visible article's topics, on every page view.
# An article stored or hidden in this process clears them once its session commits; one
# stored by another process (a worker's feed import) is offered within the lifetime.
PUBLIC_TOPICS_SECONDS = 60.0
_public_topics: dict[str, tuple[float, list[str]]] = {}
_public_topics_lock = threading.Lock()
_TOPICS_CHANGED = "newsletter.public_topics_changed"


def public_topics(session: Session) -> list[str]:
    """The topics of the articles readers may see, sorted: a topic known only from hidden
    (taken-down) articles is not offered to readers."""
    database = session.get_bind().engine.url.render_as_string(hide_password=True)
    now = monotonic_clock.monotonic()
    with _public_topics_lock:
        kept = _public_topics.get(database)
    if kept is not None and now - kept[0] < PUBLIC_TOPICS_SECONDS:
        return list(kept[1])
    rows = session.scalars(select(Article.topics).where(Article.hidden.is_(False)))
    topics = sorted({topic for row in rows for topic in (row or [])})
    with _public_topics_lock:
        _public_topics[database] = (now, topics)
    return list(topics)


def forget_public_topics() -> None:
    """The next page reads the topics afresh (articles changed, or a test emptied them)."""
    with _public_topics_lock:
        _public_topics.clear()


def _topics_changed(session: Session) -> None:
    """The topics on offer change with this session's commit (an article stored, hidden)."""
    session.info[_TOPICS_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _forget_topics_on_commit(session: Session) -> None:
    if session.info.pop(_TOPICS_CHANGED, False):
        forget_public_topics()


@event.listens_for(Session, "after_soft_rollback")
def _keep_topics_on_rollback(session: Session, previous_transaction: Any) -> None:
    session.info.pop(_TOPICS_CHANGED, None)


def get_article(session: Session, article_id: int) -> Article:
    article = session.get(Article, article_id)
    if article is None:
        raise UnknownArticle(f"No article with id {article_id}.")
    return article


def set_priority(session: Session, *, article_id: int, priority: int) -> Article:
    """The editor's priority: higher comes first in a digest. UnknownArticle or InvalidInput."""
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(
            "priority",
            f"The priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}.",
        )
    article = get_article(session, article_id)
    article.priority = priority
    session.flush()
    return article


def set_hidden(session: Session, *, article_id: int, hidden: bool) -> Article:
    """Hide an article from digests and its web page, or show it again."""
    article = get_article(session, article_id)
    article.hidden = hidden
    session.flush()
    _topics_changed(session)
    return article


def set_story(session: Session, *, article_id: int, story: str | None) -> Article:
    """Tie an article to a story (its translations share the key), or None to untie it.

    UnknownArticle or InvalidInput (see clean_story).
    """
    key = clean_story(story)
    article = get_article(session, article_id)
    article.story = key
    session.flush()
    return article


def get_article_by_slug(session: Session, slug: str) -> Article | None:
    # No slug holds a control character (PostgreSQL refuses a NUL in text): nothing to ask.
    if len(slug) > 200 or not slug.isprintable():
        return None
    return session.scalar(select(Article).where(Article.slug == slug))


def article_as_dict(article: Article) -> dict[str, Any]:
    """The article as JSON-able data (times in ISO 8601, UTC)."""
    return {
        "id": article.id,
        "slug": article.slug,
        "title": article.title,
        "summary": article.summary,
        "body": article.body,
        "url": article.url,
        "language": article.language,
        "topics": list(article.topics),
        "published_at": article.published_at.isoformat(),
        "source": article.source,
        "content_hash": article.content_hash,
        "priority": article.priority,
        "hidden": article.hidden,
        "created_at": article.created_at.isoformat() if article.created_at else None,
        "story": article.story,
    }


# --- Text clean-up ---------------------------------------------------------------------

# C0/C1 controls except \t and \n, DEL, the BOM, and bidi overrides (they can disguise text).
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u202a-\u202e\u2066-\u2069]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_CJK_EDGE = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def _error(source: str, problem: str) -> ArticleParseError:
    return ArticleParseError(_one_line(f"{source}: {problem}"))


def _one_line(text: str) -> str:
    # Only line breaks go: a file name's own spacing stays as it is.
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _decode(raw: bytes, source: str) -> str:
    if b"\x00" in raw:
        raise _error(source, "is binary data, not a text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _error(source, f"is not UTF-8 text (invalid byte at offset {exc.start})") from None


def _clean_text(text: str, source: str) -> str:
    """Normalise line ends and Unicode, drop control characters; refuse binary garbage."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
    text = text.replace("\u2029", "\n\n")
    if text:
        odd = sum(
            1
            for ch in text
            if ch == "\ufffd" or (unicodedata.category(ch)[0] == "C" and ch not in "\n\t")
        )
        if odd > max(8, len(text) // 10):
            raise _error(source, "looks like binary data, not text")
    return CONTROL_CHARS.sub("", unicodedata.normalize("NFC", text))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _join_lines(lines: Sequence[str]) -> str:
    """Join wrapped lines into one: with a space, or with nothing between Chinese characters."""
    joined = ""
    for line in (_collapse(line) for line in lines):
        if not line:
            continue
        if joined and not (_CJK_EDGE.match(joined[-1]) and _CJK_EDGE.match(line[0])):
            joined += " "
        joined += line
    return joined


def _split_paragraphs(text: str) -> list[list[str]]:
    """Paragraphs (runs of non-blank lines), each as its list of stripped lines."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def _check_title(title: str, source: str) -> str:
    title = _collapse(title)
    if not any(ch.isalnum() for ch in title):
        raise _error(source, "no title found (the text is empty or is not an article)")
    if len(title) > TITLE_MAX_CHARS:
        raise _error(
            source, f"title is {len(title)} characters long; at most {TITLE_MAX_CHARS} fit"
        )
    return title


def _same_title(line: str, title: str) -> bool:
    a, b = _collapse(line).casefold(), _collapse(title).casefold()
    if a == b:
        return True
    # Breadcrumbs shorten long titles: "Putin wants greater coop…"
    for ellipsis in ("…", "..."):
        if b.endswith(ellipsis) and len(b) > len(ellipsis) + 3:
            return a.startswith(b.removesuffix(ellipsis).rstrip())
    return False


# --- Scraped pages ---------------------------------------------------------------------

_BREADCRUMB_SEPARATOR = re.compile(r"\s*[»›]\s*")


def _take_title(paragraphs: list[list[str]]) -> tuple[str | None, list[str]]:
    """The title and the remaining paragraphs, without the breadcrumb line."""
    lines = [list(p) for p in paragraphs]
    if not lines:
        return None, []
    title: str | None = None
    crumb = _breadcrumb_title(lines[0][0])
    if crumb is not None:
        lines[0].pop(0)
        lines = [p for p in lines if p]
        if lines and _same_title(lines[0][0], crumb):
            title = lines[0].pop(0)
        elif crumb:
            title = crumb
    if title is None and lines:
        title = lines[0].pop(0)
    return title, [_join_lines(p) for p in lines if p]


def _breadcrumb_title(line: str) -> str | None:
    """The last part of a breadcrumb ("Início » World » <title>"), or None if not one."""
    parts = _BREADCRUMB_SEPARATOR.split(line.strip())
    if len(parts) < 2 or len(parts[0].split()) > 3:
        return None
    return parts[-1].strip()


_CHROME_WORDS = re.compile(
    r"contact|contacte|contato|contactos|fale conosco|fale connosco|联系|"
    r"subscri|assine|assinar|assinatura|inscreva|sign up|订阅|"
    r"newsletter|boletim|studio|follow us|siga-nos|siga a|关注我们|关注|"
    r"share|partilh|compartilh|分享|"
    r"about us|sobre nós|关于我们|privacy|privacidade|隐私|cookies?|terms of|termos de|"
    r"advertis|publicidade|广告|related|relacionad|相关|read more|leia mais|leia também|"
    r"download (?:our|the) app|app store|google play|facebook|twitter|instagram|linkedin|"
    r"youtube|whatsapp|telegram|微信|微博",
    re.IGNORECASE,
)
_CALL_TO_ACTION = re.compile(
    r"^(?:subscribe|sign up|join|follow|contact|download|share|"
    r"assine|subscreva|inscreva|siga|contacte|contate|fale|descarregue|baixe|partilhe|"
    r"订阅|关注|联系|下载|分享)",
    re.IGNORECASE,
)
_COPYRIGHT = re.compile(
    r"©|\(c\)\s*\d{4}|copyright|all rights reserved|todos os direitos reservados|版权所有",
    re.IGNORECASE,
)
_SENTENCE_FINAL = re.compile(r"[.。]['\"”’»)）」』]*$")
_ANY_FINAL_PUNCTUATION = re.compile(r"[.!?…:;。！？：；]['\"”’»)）」』]*$")


def _drop_trailing_chrome(paragraphs: list[str]) -> list[str]:
    """The paragraphs without the site's footer (contact, blurb, newsletter call, ©)."""
    start = len(paragraphs)
    while start > 0:
        candidate = paragraphs[start - 1]
        if _is_chrome(candidate) or _is_navigation(candidate):
            start -= 1
        elif start >= 2 and _is_blurb(candidate) and _is_chrome(paragraphs[start - 2]):
            # A publisher's one-line blurb sits among the footer's links ("Generalist
            # media, focusing on ..."); it reads like a sentence, so only its place tells.
            start -= 2
        else:
            break
    return paragraphs[:start]


def _size(text: str) -> int:
    """Roughly the number of words (a Chinese word is about two characters)."""
    return len(text.split()) + len(_CJK.findall(text)) // 2


def _is_chrome(paragraph: str) -> bool:
    """A short paragraph that reads like a footer link or call to action."""
    if _size(paragraph) > 25:
        return False
    if _COPYRIGHT.search(paragraph) or _CALL_TO_ACTION.match(paragraph):
        return True
    return bool(_CHROME_WORDS.search(paragraph)) and not _SENTENCE_FINAL.search(paragraph)


def _is_navigation(paragraph: str) -> bool:
    """A few words with no punctuation: a menu entry or a label, not prose."""
    return _size(paragraph) <= 6 and not _ANY_FINAL_PUNCTUATION.search(paragraph)


def _is_blurb(paragraph: str) -> bool:
    return _size(paragraph) <= 30 and len(_split_sentences(paragraph)) <= 2


# --- Summary and language --------------------------------------------------------------

# Only from the start of a run of marks, and without giving any back: otherwise every mark
# of a long run ("!!!!…") would rescan the rest of it, quadratic in the run's length.
_WESTERN_END = re.compile(r"(?<![.!?…])[.!?…]++['\"”’»)\]]*+(?=\s+\S)")
_NEXT_CHARACTER = re.compile(r"\s*(\S?)")
_CJK_END = re.compile(r"[。！？]+[”’」』）)]*")
_ABBREVIATIONS = frozenset(
    re.findall(r"\S+", "mr mrs ms dr prof sr sra srs dra st jr vs no nº gen gov sen rep lt col av")
)


def lede_summary(paragraphs: Sequence[str]) -> str:
    """The lede's first sentences, as many as fit in SUMMARY_MAX_CHARS."""
    lede = next((p for p in paragraphs if _ANY_FINAL_PUNCTUATION.search(p)), None)
    if lede is None:
        lede = paragraphs[0] if paragraphs else ""
    sentences = _split_sentences(lede)
    summary = ""
    for sentence in sentences:
        candidate = _join_lines([summary, sentence]) if summary else sentence
        if len(candidate) > SUMMARY_MAX_CHARS:
            break
        summary = candidate
    if not summary and sentences:
        summary = _shorten(sentences[0], SUMMARY_MAX_CHARS)
    return summary


def _split_sentences(text: str) -> list[str]:
    text = _collapse(text)
    ends: list[int] = [m.end() for m in _CJK_END.finditer(text)]
    for match in _WESTERN_END.finditer(text):
        # Looked up in place: slicing the text at each mark is quadratic in a long paragraph.
        word = text[text.rfind(" ", 0, match.end()) + 1 : match.end()]
        bare = word.strip("'\"“”‘’«»()[]").rstrip(".!?…").casefold()
        next_char = _NEXT_CHARACTER.match(text, match.end()).group(1)  # type: ignore[union-attr]
        if bare in _ABBREVIATIONS or re.fullmatch(r"(?:\w\.)+\w?", word.rstrip("'\"”’»)]")):
            continue  # "Mr. Putin", "U.S. troops"
        if next_char.islower():
            continue
        ends.append(match.end())
    sentences: list[str] = []
    start = 0
    for end in sorted(set(ends)):
        if end > start:
            sentences.append(text[start:end].strip())
            start = end
    if text[start:].strip():
        sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def _shorten(text: str, limit: int) -> str:
    """Cut a too-long sentence at a clause or word boundary, marking the cut with '…'."""
    cut = text[: limit - 1]
    for boundaries in ("，,;；", " "):
        position = max(cut.rfind(ch) for ch in boundaries)
        if position > limit // 2:
            cut = cut[:position]
            break
    return cut.rstrip(" ,;，；") + "…"


# Frequent short words: a few dozen of them decide the language of any real paragraph.
_PORTUGUESE_WORDS = frozenset(
    re.findall(
        r"\S+",
        "não de que os as para com uma um do da dos das em no na nos nas é são ao aos à às "
        "pelo pela pelos pelas mais como foi ser está também sobre entre mas ou",
    )
)
_ENGLISH_WORDS = frozenset(
    re.findall(
        r"\S+",
        "the and of to in is that for with was on are by it as at from this be have has "
        "which were will said",
    )
)


def guess_language(title: str, body: str) -> str:
    """Chinese if much of the text is Han characters; else Portuguese or English by words."""
    text = f"{title}\n{body}"
    letters = sum(1 for ch in text if ch.isalpha())
    if letters and len(_CJK.findall(text)) / letters >= 0.3:
        return "zh"
    words = re.findall(r"[^\W\d_]+", text.casefold())
    portuguese = sum(1 for w in words if w in _PORTUGUESE_WORDS or re.search(r"[ãõç]", w))
    english = sum(1 for w in words if w in _ENGLISH_WORDS)
    return "pt" if portuguese > english else "en"


# --- Markdown and front matter ---------------------------------------------------------


@dataclass
class _Block:
    text: str
    heading: int = 0  # heading level, 0 for a paragraph


def _starts_with_front_matter(text: str) -> bool:
    return text.lstrip("\ufeff").split("\n", 1)[0].strip() == "---"


def _split_front_matter(text: str, source: str) -> tuple[dict[str, Any], str]:
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise _error(source, "front matter starts with '---' but has no closing '---' line")
    front = "\n".join(lines[1:end])
    # PyYAML recurses per nesting level, and reaching Python's limit takes it a second.
    if _flow_depth(front) > MAX_FRONT_MATTER_DEPTH:
        raise _error(source, "invalid YAML front matter: nested too deeply")
    try:
        meta = yaml.safe_load(front)
    except yaml.MarkedYAMLError as exc:
        where = f" (line {exc.problem_mark.line + 2})" if exc.problem_mark else ""
        raise _error(source, f"invalid YAML front matter: {exc.problem}{where}") from None
    except (yaml.YAMLError, ValueError) as exc:
        # PyYAML builds dates itself and raises ValueError for 2026-13-45.
        raise _error(source, f"invalid YAML front matter: {exc}") from None
    except RecursionError:  # deep block nesting, which _flow_depth does not count
        raise _error(source, "invalid YAML front matter: nested too deeply") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise _error(source, "front matter must be 'key: value' lines")
    return {str(k): v for k, v in meta.items()}, "\n".join(lines[end + 1 :])


def _flow_depth(text: str) -> int:
    """How deep "[" and "{" nest (quotes not considered: a generous over-estimate)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def _text_field(meta: dict[str, Any], key: str, source: str) -> str:
    value = meta.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _error(source, f"front matter '{key}' must be text")
    # Escapes in quoted YAML strings can bring back what _clean_text removed.
    return CONTROL_CHARS.sub("", unicodedata.normalize("NFC", str(value)))


def _url_field(meta: dict[str, Any], source: str) -> str | None:
    url = _text_field(meta, "url", source).strip()
    if not url:
        return None
    if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", url, re.IGNORECASE):
        raise _error(source, f"url must be an http:// or https:// address, got {url[:80]!r}")
    if len(url) > URL_MAX_CHARS:
        raise _error(source, f"url is longer than {URL_MAX_CHARS} characters")
    return url


def _language_field(meta: dict[str, Any], source: str) -> str | None:
    value = _text_field(meta, "language", source).strip()
    if not value:
        return None
    # Accept regional tags (pt-BR, zh-Hant): the newsletter knows languages, not regions.
    language = re.split(r"[-_]", value.casefold(), maxsplit=1)[0]
    if language not in LANGUAGES:
        raise _error(source, f"unknown language {value!r} (expected one of {', '.join(LANGUAGES)})")
    return language


def _story_field(meta: dict[str, Any], source: str) -> str | None:
    try:
        return clean_story(_text_field(meta, "story", source))
    except InvalidInput as exc:
        raise _error(source, exc.message) from None


def _topics_field(meta: dict[str, Any], source: str) -> list[str]:
    value = meta.get("topics")
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = re.split(r"[,，、]", value)
    elif isinstance(value, list):
        items = value
    else:
        raise _error(source, "topics must be a list or a comma-separated string")
    topics: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _error(source, f"topic {item!r} is not text")
        topic = _collapse(CONTROL_CHARS.sub("", str(item))).casefold()
        if topic and topic not in topics:
            topics.append(topic)
    return topics


def _published_at_field(meta: dict[str, Any], source: str) -> datetime | None:
    value = meta.get("published_at")
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _error(
                source, f"published_at {value!r} is not a date or an ISO 8601 time"
            ) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time(0))
    if isinstance(value, datetime):
        # The clock's years, as for every time read from outside; no zone means UTC.
        try:
            return clock.to_utc(value, time_zone="UTC", field="published_at")
        except InvalidInput as exc:
            raise _error(source, exc.message) from None
    raise _error(source, f"published_at {value!r} is not a date or an ISO 8601 time")


class _TextReader(MarkdownIt):
    """markdown-it-py set to read Markdown for its text."""

    def __init__(self) -> None:
        super().__init__("commonmark", {"html": False})
        self.enable("strikethrough")
        # Entities stay as written, like HTML: the text is shown as text, never as markup.
        self.disable("entity")

    def validateLink(self, url: str) -> bool:
        # Nothing here becomes an href (links are unwrapped to their text), so no target
        # is refused: [text](javascript:…) reads "text", as a link anywhere else does.
        return True


# markdown-it-py: a CommonMark parser, linear in its input (delimiter runs are matched
# with a bound per run), where hand-written patterns were quadratic on crafted lines.
# Raw HTML is off: tags in the source stay text.
_MARKDOWN = _TextReader()


def _markdown_blocks(markdown: str) -> list[_Block]:
    """Markdown as plain-text blocks: headings, paragraphs, lists (one item a line) and
    code (as written), markup removed."""
    blocks: list[_Block] = []
    lists: list[int | None] = []  # per open list: the next number, or None for bullets
    items: list[list[str]] = []  # the outermost open list's items, nested ones flattened
    heading = 0  # the level of the heading being read, 0 outside one
    for token in _MARKDOWN.parse(markdown):
        kind = token.type
        if kind == "heading_open":
            heading = int(token.tag.removeprefix("h"))
        elif kind == "heading_close":
            heading = 0
        elif kind in {"bullet_list_open", "ordered_list_open"}:
            lists.append(int(token.attrGet("start") or 1) if kind == "ordered_list_open" else None)
        elif kind in {"bullet_list_close", "ordered_list_close"}:
            lists.pop()
            if not lists:
                text = "\n".join(" ".join(item) for item in items if len(item) > 1)
                blocks.append(_Block(text))
                items = []
        elif kind == "list_item_open":
            number = lists[-1]
            items.append([f"{token.info or number}." if number is not None else "-"])
        elif kind in {"inline", "fence", "code_block"}:
            text = _inline_text(token) if kind == "inline" else _code_text(token.content)
            if not text:
                continue
            if items:
                items[-1].append(_collapse(text))
            else:
                blocks.append(_Block(_collapse(text) if heading else text, heading))
    return [b for b in blocks if b.text.strip()]


def _code_text(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.split("\n")).strip("\n")


def _inline_markdown(text: str) -> str:
    """Inline Markdown as the text a reader sees: links, emphasis and code spans unwrapped.

    Anything else, HTML included, stays exactly as written: it is text, not markup.
    """
    tokens = _MARKDOWN.parseInline(text)
    return _inline_text(tokens[0]) if tokens else ""


def _inline_text(token: Token) -> str:
    """The text of an inline token; its wrapped lines joined as _join_lines does."""
    lines = [""]
    for piece in _inline_pieces(token.children or []):
        if piece is None:
            lines.append("")
        else:
            lines[-1] += piece
    return _join_lines(lines)


def _inline_pieces(children: list[Token]) -> Iterator[str | None]:
    """Each child's text, or None for a line break."""
    for child in children:
        if child.type in {"text", "text_special", "code_inline"}:
            yield child.content
        elif child.type in {"softbreak", "hardbreak"}:
            yield None
        elif child.type == "image":
            yield from _inline_pieces(child.children or [])


# --- Storage ---------------------------------------------------------------------------


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a timezone-aware datetime is needed, got a naive one")
    return value.astimezone(UTC)


def _check_storable(parsed: ParsedArticle) -> None:
    """Refuse what the table cannot hold, for articles that did not come from the parsers."""
    _check_title(parsed.title, parsed.source)
    if parsed.language not in LANGUAGES:
        raise _error(parsed.source, f"unknown language {parsed.language!r}")
    if parsed.url is not None and len(parsed.url) > URL_MAX_CHARS:
        raise _error(parsed.source, f"url is longer than {URL_MAX_CHARS} characters")


def content_hash(parsed: ParsedArticle) -> str:
    """sha256 of the normalised title, body and url: what makes two imports one article."""
    parts = [
        _collapse(unicodedata.normalize("NFC", parsed.title)),
        "\n\n".join(_collapse(p) for p in unicodedata.normalize("NFC", parsed.body).split("\n\n")),
        (parsed.url or "").strip(),
    ]
    return hashlib.sha256("\x1e".join(parts).encode("utf-8")).hexdigest()


_SLUG_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l"})


def _slugify(title: str) -> str:
    """A URL slug: ASCII words (accents folded), or a short hash where that says little."""
    folded = unicodedata.normalize("NFKD", title.casefold().translate(_SLUG_FOLD))
    ascii_text = "".join(ch for ch in folded if not unicodedata.combining(ch))
    ascii_text = re.sub(r"['’]", "", ascii_text)
    slug = "-".join(re.findall(r"[a-z0-9]+", ascii_text))
    if len(slug) > SLUG_MAX_CHARS:
        slug = slug[: SLUG_MAX_CHARS + 1].rsplit("-", 1)[0][:SLUG_MAX_CHARS]
    letters = sum(1 for ch in title if ch.isalnum())
    mostly_chinese = letters > 0 and len(_CJK.findall(title)) / letters >= 0.3
    if mostly_chinese or len(slug) < 3:
        short_hash = hashlib.sha256(title.encode("utf-8")).hexdigest()[:10]
        slug = f"{slug}-{short_hash}" if slug else short_hash
    return slug


def _unique_slug(session: Session, base: str) -> str:
    taken = set(
        session.scalars(
            select(Article.slug).where(or_(Article.slug == base, Article.slug.like(f"{base}-%")))
        )
    )
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def _article_files(paths: Sequence[Path]) -> Iterator[tuple[Path, str | None]]:
    """Each article file under paths once, in order, or (path, error) for a missing one."""
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in ARTICLE_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.exists():
            found = [path]
        else:
            yield path, f"{path}: no such file or directory"
            continue
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file, None


def reading_url(article: Article, base_url: str) -> str:
    """Where a reader reads an article: its own site's page, else its page on ours."""
    return article.url or f"{base_url}/articles/{article.slug}"
