"""Article ingest and query, on real SQLite and PostgreSQL databases (how a file is read into
an article: tests/unit/articles/test_store.py)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from newsletter.articles.store import (
    ParsedArticle,
    article_as_dict,
    get_article_by_slug,
    import_paths,
    list_articles,
    parse_article_file,
    store_article,
)
from newsletter.core.models import Article
from tests.conftest import ROOT

SEED = ROOT / "seeds" / "000_6fc2d16fc29a7e31.txt"
POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

MARKDOWN_ARTICLE = (ROOT / "tests" / "data" / "articles" / "cimeira.md").read_text(encoding="utf-8")


# --- Fixtures ---------------------------------------------------------------------------


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Article)) or 0


def _parsed(title: str, body: str, **overrides: object) -> ParsedArticle:
    fields: dict[str, object] = {
        "title": title,
        "body": body,
        "summary": body.split("\n\n")[0],
        "url": None,
        "language": "en",
        "topics": [],
        "published_at": None,
        "source": "api",
    }
    fields.update(overrides)
    return ParsedArticle(**fields)  # type: ignore[arg-type]


# --- The seed article -------------------------------------------------------------------


def test_seed_article_is_imported_without_breadcrumb_or_site_chrome(session: Session) -> None:
    report = import_paths(session, [SEED], now=NOW)
    session.commit()

    assert report.imported == [str(SEED)]
    assert report.errors == [] and report.unchanged == []
    session.expire_all()
    article = session.scalars(select(Article)).one()
    assert article.title == "Putin wants greater cooperation between Russia and North Korea"
    assert article.slug == "putin-wants-greater-cooperation-between-russia-and-north-korea"
    assert article.body.startswith("Russian President Vladimir Putin today called")
    assert article.body.endswith("including tactical nuclear weapons.")
    for chrome in (
        "Contact Us",
        "Generalist media",
        "Plataforma Studio",
        "Subscribe Plataforma Newsletter",
        "Início",
        "»",
    ):
        assert chrome not in article.body
    assert article.title not in article.body
    assert article.language == "en"
    assert article.topics == []
    assert article.source == str(SEED)
    assert article.published_at == NOW


# --- Storing ----------------------------------------------------------------------------


def test_importing_twice_changes_nothing(session: Session, tmp_path: Path) -> None:
    first = import_paths(session, [SEED], now=NOW)
    session.commit()
    before = article_as_dict(session.scalars(select(Article)).one())

    copy = _write(tmp_path / "copy-of-seed.txt", SEED.read_bytes())
    second = import_paths(session, [SEED, copy], now=NOW + timedelta(days=3))
    session.commit()
    session.expire_all()

    assert first.imported == [str(SEED)]
    assert second.imported == [] and second.errors == []
    assert second.unchanged == [str(SEED), str(copy)]
    assert _count(session) == 1
    assert article_as_dict(session.scalars(select(Article)).one()) == before


def test_store_article_returns_the_existing_row(session: Session) -> None:
    parsed = parse_article_file(SEED)

    article, created = store_article(session, parsed, now=NOW)
    again, created_again = store_article(session, parsed, now=NOW + timedelta(hours=1))

    assert created and not created_again
    assert again.id == article.id
    assert again.published_at == NOW


def test_an_article_without_a_date_is_dated_at_its_import(session: Session) -> None:
    article, _ = store_article(session, _parsed("Undated", "Some text."), now=NOW)
    session.commit()
    session.expire_all()

    stored = session.get(Article, article.id)
    assert stored is not None
    assert stored.published_at == NOW
    assert stored.published_at.tzinfo is not None
    assert stored.created_at == NOW


def test_markdown_article_is_stored_with_all_fields(session: Session, tmp_path: Path) -> None:
    _write(tmp_path / "cimeira.md", MARKDOWN_ARTICLE)

    report = import_paths(session, [tmp_path], now=NOW)
    session.commit()
    session.expire_all()

    assert report.imported == [str(tmp_path / "cimeira.md")]
    article = get_article_by_slug(session, "cimeira-em-lisboa-reune-paises-lusofonos")
    assert article is not None
    assert article.url == "https://example.org/noticias/cimeira-lisboa"
    assert article.published_at == datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    assert article.language == "pt"
    assert article.topics == ["china", "lusofonia", "economia"]
    assert article.summary == "Uma cimeira histórica em Lisboa."


def test_chinese_articles_get_unique_ascii_slugs(session: Session, tmp_path: Path) -> None:
    _write(tmp_path / "a.md", "---\ntitle: 澳门经济稳步增长\n---\n澳门今年的经济稳步增长。\n")
    _write(tmp_path / "b.md", "---\ntitle: 中葡论坛在澳门举行\n---\n论坛今天在澳门开幕。\n")
    _write(tmp_path / "c.md", "---\ntitle: 澳门经济稳步增长\n---\n另一篇同名文章。\n")

    report = import_paths(session, [tmp_path], now=NOW)
    session.commit()

    assert report.errors == [] and len(report.imported) == 3
    articles = session.scalars(select(Article).order_by(Article.id)).all()
    slugs = [a.slug for a in articles]
    assert all(SLUG.fullmatch(slug) for slug in slugs), slugs
    assert len(set(slugs)) == 3
    assert slugs[2] == f"{slugs[0]}-2"
    assert [a.language for a in articles] == ["zh", "zh", "zh"]


def test_slug_collisions_get_numbered_suffixes(session: Session) -> None:
    slugs = [
        store_article(session, _parsed("Ação e Coração em São Tomé", f"Text {n}."), now=NOW)[0].slug
        for n in range(3)
    ]
    session.commit()

    assert slugs == [
        "acao-e-coracao-em-sao-tome",
        "acao-e-coracao-em-sao-tome-2",
        "acao-e-coracao-em-sao-tome-3",
    ]
    other = store_article(session, _parsed("Ação e coração em São Tomé 2", "Other."), now=NOW)[0]
    assert other.slug == "acao-e-coracao-em-sao-tome-2-2"


def test_a_bad_file_is_reported_and_the_rest_imported(session: Session, tmp_path: Path) -> None:
    good_md = _write(tmp_path / "news" / "a-good.md", "---\ntitle: Good one\n---\nFine text.\n")
    bad_md = _write(tmp_path / "news" / "b-bad.md", "---\ntitle: [oops\n---\nText.\n")
    empty = _write(tmp_path / "news" / "deeper" / "c-empty.txt", "")
    good_txt = _write(tmp_path / "news" / "deeper" / "d-good.txt", "Another title\n\nBody here.\n")
    _write(tmp_path / "news" / "notes.csv", "not,an,article\n")
    _write(tmp_path / "news" / ".hidden" / "e.txt", "Hidden\n\nNot imported.\n")
    missing = tmp_path / "nowhere.md"

    report = import_paths(session, [tmp_path / "news", missing], now=NOW)
    session.commit()

    assert report.imported == [str(good_md), str(good_txt)]
    assert len(report.errors) == 3
    for error, path in zip(report.errors, [bad_md, empty, missing], strict=True):
        assert error.startswith(f"{path}: ")
        assert "\n" not in error
    assert _count(session) == 2


def test_hostile_text_is_kept_verbatim_as_text(session: Session, tmp_path: Path) -> None:
    hostile = "<script>alert(1)</script>"
    page = _write(
        tmp_path / "xss.txt",
        f"Home » Title with {hostile}\n\nTitle with {hostile}\n\n"
        f"The mayor said {hostile} & <b>bold</b> is not a threat.\n",
    )
    markdown = _write(
        tmp_path / "xss.md",
        f'---\ntitle: "MD {hostile}"\nsummary: "{hostile}"\n---\n'
        f'Body with {hostile} and <img src=x onerror="alert(2)">.\n',
    )

    report = import_paths(session, [page, markdown], now=NOW)
    session.commit()
    session.expire_all()

    assert report.errors == []
    scraped = session.scalars(select(Article).where(Article.source == str(page))).one()
    assert scraped.title == f"Title with {hostile}"
    assert scraped.body == f"The mayor said {hostile} & <b>bold</b> is not a threat."
    edited = session.scalars(select(Article).where(Article.source == str(markdown))).one()
    assert edited.title == f"MD {hostile}"
    assert edited.summary == hostile
    assert edited.body == f'Body with {hostile} and <img src=x onerror="alert(2)">.'
    assert SLUG.fullmatch(scraped.slug) and SLUG.fullmatch(edited.slug)


# --- Queries ----------------------------------------------------------------------------


def test_list_articles_newest_first_without_hidden(session: Session) -> None:
    for day in (3, 1, 2):
        store_article(
            session,
            _parsed(f"Day {day}", f"Text of day {day}.", published_at=NOW + timedelta(days=day)),
            now=NOW,
        )
    hidden = get_article_by_slug(session, "day-2")
    assert hidden is not None
    hidden.hidden = True
    session.commit()

    assert [a.title for a in list_articles(session)] == ["Day 3", "Day 1"]
    assert [a.title for a in list_articles(session, include_hidden=True)] == [
        "Day 3",
        "Day 2",
        "Day 1",
    ]
    assert [a.title for a in list_articles(session, limit=1)] == ["Day 3"]
    assert get_article_by_slug(session, "no-such-article") is None


def test_article_as_dict_is_json(session: Session) -> None:
    article, _ = store_article(session, parse_article_file(SEED), now=NOW)
    session.commit()

    data = json.loads(json.dumps(article_as_dict(article)))

    assert data["slug"] == article.slug
    assert data["title"] == "Putin wants greater cooperation between Russia and North Korea"
    assert data["published_at"] == "2026-11-20T09:30:00+00:00"
    assert data["language"] == "en"
    assert data["topics"] == []
    assert data["hidden"] is False
