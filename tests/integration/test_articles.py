"""Article ingest and query, on real SQLite and PostgreSQL databases."""

# Chinese text and typographic breadcrumb separators are the point of several tests.
# ruff: noqa: RUF001

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
    ArticleParseError,
    ParsedArticle,
    article_as_dict,
    get_article_by_slug,
    import_paths,
    list_articles,
    parse_article_file,
    parse_markdown,
    parse_scraped_text,
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

PORTUGUESE_PAGE = """\
Início » Sociedade » Macau reforça ligações aéreas com Lisboa

Macau reforça ligações aéreas com Lisboa

O Governo de Macau anunciou hoje que vai apoiar uma nova ligação aérea direta para Lisboa, \
com três voos por semana a partir de março.

Segundo o secretário para a Economia, a rota não é apenas turística: as empresas da região \
querem uma porta de entrada para os mercados de língua portuguesa.

A companhia ainda não revelou o preço dos bilhetes.

Partilhe este artigo

Contacte-nos

Jornal generalista dedicado às relações entre a China e os países de língua portuguesa.

Assine a newsletter e receba as notícias todas as manhãs!

© 2026 Exemplo Media. Todos os direitos reservados.
"""

ENGLISH_PAGE = """\
Home › World › Lisbon hosts forum on trade with China

Lisbon hosts forum on trade with China

Ministers from eight Portuguese-speaking countries met in Lisbon on Monday to discuss \
trade with China.

What was agreed

The delegates signed a declaration on port investment.

Talks resume in May.

Follow us on Twitter

Sign up for our newsletter

About the publisher

Copyright 2026 Example Media. All rights reserved.
"""

CHINESE_PAGE = """\
首页 » 澳门与葡语国家加强合作

澳门与葡语国家加强合作

澳门特区政府今天宣布，将与葡语国家在贸易和教育领域加强合作。双方同意明年举办论坛。

官员表示，澳门将继续发挥平台作用。

联系我们

订阅我们的电子报，获取最新消息！

版权所有 © 2026
"""

MARKDOWN_ARTICLE = """\
---
title: Cimeira em Lisboa reúne países lusófonos
url: https://example.org/noticias/cimeira-lisboa
published_at: 2026-11-20T08:00:00+08:00
language: pt
topics: [China, Lusofonia, " china ", economia]
summary: Uma cimeira *histórica* em Lisboa.
---
# Cimeira em Lisboa reúne países lusófonos

Os líderes dos países de língua portuguesa reuniram-se **hoje** em Lisboa, \
segundo a [agência Lusa](https://www.lusa.pt).

## Comércio

O encontro, que terminou ao fim da tarde, discutiu o comércio com a _China_ e o `Fórum Macau`.
"""


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


def test_seed_summary_is_the_lede_in_whole_sentences() -> None:
    parsed = parse_article_file(SEED)
    lede = parsed.body.split("\n\n")[0]

    assert parsed.summary == lede
    assert parsed.summary.endswith("the Kremlin announced.")
    assert len(parsed.summary) <= 300
    assert "\n\n" in parsed.body and "\n\n\n" not in parsed.body


# --- Scraped pages ----------------------------------------------------------------------


def test_portuguese_page_loses_its_differently_worded_chrome() -> None:
    parsed = parse_scraped_text(PORTUGUESE_PAGE, source="macau.txt")

    assert parsed.title == "Macau reforça ligações aéreas com Lisboa"
    assert parsed.body.startswith("O Governo de Macau anunciou hoje")
    assert parsed.body.endswith("A companhia ainda não revelou o preço dos bilhetes.")
    for chrome in ("Início", "Partilhe", "Contacte-nos", "Jornal generalista", "Assine", "©"):
        assert chrome not in parsed.body
    assert parsed.language == "pt"
    assert parsed.summary.startswith("O Governo de Macau anunciou hoje")
    assert parsed.summary.endswith("a partir de março.")


def test_english_page_keeps_short_real_paragraphs_and_subheadings() -> None:
    parsed = parse_scraped_text(ENGLISH_PAGE, source="forum.txt")

    assert parsed.title == "Lisbon hosts forum on trade with China"
    assert parsed.body.split("\n\n") == [
        "Ministers from eight Portuguese-speaking countries met in Lisbon on Monday to discuss "
        "trade with China.",
        "What was agreed",
        "The delegates signed a declaration on port investment.",
        "Talks resume in May.",
    ]
    assert parsed.language == "en"


def test_chinese_page_loses_chinese_chrome_and_is_chinese() -> None:
    parsed = parse_scraped_text(CHINESE_PAGE, source="macau-zh.txt")

    assert parsed.title == "澳门与葡语国家加强合作"
    assert parsed.body.endswith("官员表示，澳门将继续发挥平台作用。")
    for chrome in ("联系我们", "订阅", "版权所有", "首页"):
        assert chrome not in parsed.body
    assert parsed.language == "zh"
    assert (
        parsed.summary
        == "澳门特区政府今天宣布，将与葡语国家在贸易和教育领域加强合作。双方同意明年举办论坛。"
    )


def test_without_breadcrumb_the_first_line_is_the_title() -> None:
    parsed = parse_scraped_text(
        "\n\n  Portugal and China sign visa deal  \nThe agreement was signed in Beijing.\n",
        source="visa.txt",
    )

    assert parsed.title == "Portugal and China sign visa deal"
    assert parsed.body == "The agreement was signed in Beijing."
    assert parsed.summary == "The agreement was signed in Beijing."


def test_crlf_and_control_characters_are_cleaned() -> None:
    parsed = parse_scraped_text(
        "Home » Bell\x07 test\r\n\r\nBell\x07 test\r\n\r\nA line\x1b[31m with\x00 noise.\r\n",
        source="noise.txt",
    )

    assert parsed.title == "Bell test"
    assert parsed.body == "A line[31m with noise."
    assert "\r" not in parsed.body


def test_long_lede_is_cut_at_a_sentence_boundary() -> None:
    sentences = [
        f"Sentence number {n} talks about the port of Sines at some length." for n in range(10)
    ]
    parsed = parse_scraped_text("Title\n\n" + " ".join(sentences), source="long.txt")

    assert len(parsed.summary) <= 300
    assert parsed.summary.endswith(".")
    assert parsed.body.startswith(parsed.summary)
    assert parsed.summary.count("Sentence number") == len(parsed.summary) // len(sentences[0])


@pytest.mark.parametrize(
    "content",
    [b"", b"   \n\n\t\n", b"\x00\x01\x02\xff\xfe binary \x00", bytes(range(256)) * 4],
    ids=["empty", "whitespace", "nul-bytes", "all-bytes"],
)
def test_files_without_a_title_are_refused(tmp_path: Path, content: bytes) -> None:
    path = _write(tmp_path / "broken.txt", content)

    with pytest.raises(ArticleParseError) as caught:
        parse_article_file(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_text_of_garbage_characters_is_refused() -> None:
    with pytest.raises(ArticleParseError, match=r"^garbage\.txt: "):
        parse_scraped_text("".join(chr(c) for c in range(1, 32)) * 3, source="garbage.txt")
    with pytest.raises(ArticleParseError, match=r"^dashes\.txt: "):
        parse_scraped_text("----\n\n****\n", source="dashes.txt")


# --- Markdown ---------------------------------------------------------------------------


def test_markdown_front_matter_gives_every_field(tmp_path: Path) -> None:
    parsed = parse_article_file(_write(tmp_path / "cimeira.md", MARKDOWN_ARTICLE))

    assert parsed.title == "Cimeira em Lisboa reúne países lusófonos"
    assert parsed.url == "https://example.org/noticias/cimeira-lisboa"
    assert parsed.published_at == datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    assert parsed.language == "pt"
    assert parsed.topics == ["china", "lusofonia", "economia"]
    assert parsed.summary == "Uma cimeira histórica em Lisboa."
    assert parsed.body == (
        "Os líderes dos países de língua portuguesa reuniram-se hoje em Lisboa, "
        "segundo a agência Lusa.\n\n"
        "Comércio\n\n"
        "O encontro, que terminou ao fim da tarde, discutiu o comércio com a China "
        "e o Fórum Macau."
    )
    assert parsed.source == str(tmp_path / "cimeira.md")


@pytest.mark.parametrize(
    ("front_matter", "expected"),
    [
        ("published_at: 2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("published_at: 2026-11-20 08:15:00", datetime(2026, 11, 20, 8, 15, tzinfo=UTC)),
        ("published_at: '2026-11-20T08:15:00Z'", datetime(2026, 11, 20, 8, 15, tzinfo=UTC)),
        ("published_at: '2026-11-20T08:15:00-03:00'", datetime(2026, 11, 20, 11, 15, tzinfo=UTC)),
    ],
)
def test_markdown_dates_become_utc(front_matter: str, expected: datetime) -> None:
    parsed = parse_markdown(f"---\ntitle: T\n{front_matter}\n---\nBody.\n", source="d.md")

    assert parsed.published_at == expected


def test_markdown_topics_may_be_a_comma_separated_string() -> None:
    parsed = parse_markdown(
        "---\ntitle: T\ntopics: 'Macau, Brasil ,macau,, Angola'\n---\nBody.\n", source="t.md"
    )

    assert parsed.topics == ["macau", "brasil", "angola"]


def test_markdown_without_front_matter_takes_the_heading_as_title() -> None:
    parsed = parse_markdown(
        "Intro line before.\n\n# Angola elects a new parliament\n\nVoters went to the polls.\n",
        source="angola.md",
    )

    assert parsed.title == "Angola elects a new parliament"
    assert parsed.body == "Intro line before.\n\nVoters went to the polls."
    assert parsed.language == "en"
    assert parsed.published_at is None


def test_markdown_lists_and_code_read_as_plain_text() -> None:
    parsed = parse_markdown(
        "# Lists\n\n* **first** item\n* second [link](https://x.org/a_(b))\n\n"
        "```\nsnake_case *stays*\n```\n\nA file_name_here stays, \\*stars\\* too.\n",
        source="lists.md",
    )

    assert parsed.body.split("\n\n") == [
        "- first item\n- second link",
        "snake_case *stays*",
        "A file_name_here stays, *stars* too.",
    ]


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("---\ntitle: [unclosed\n---\nBody.\n", "invalid YAML"),
        ("---\ntitle: T\nlanguage: fr\n---\nBody.\n", "unknown language"),
        ("---\ntitle: T\npublished_at: next tuesday\n---\nBody.\n", "published_at"),
        ("---\ntitle: T\npublished_at: 2026-13-45\n---\nBody.\n", "invalid YAML"),
        ("---\ntitle: T\n\nBody without the closing line.\n", "closing"),
        ("---\ntitel: T\n---\nBody.\n", "titel"),
        ("---\ntitle: T\nurl: javascript:alert(1)\n---\nBody.\n", "url"),
        ("---\ntitle: T\ntopics: 3\n---\nBody.\n", "topics"),
        ("---\n- a list\n---\nBody.\n", "key: value"),
        ("---\nlanguage: en\n---\nNo heading anywhere.\n", "no title"),
    ],
    ids=[
        "bad-yaml",
        "unknown-language",
        "bad-date-string",
        "impossible-date",
        "unclosed-front-matter",
        "unknown-key",
        "javascript-url",
        "topics-not-text",
        "front-matter-not-a-mapping",
        "no-title",
    ],
)
def test_bad_markdown_is_refused_with_a_one_line_message(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = _write(tmp_path / "editor's draft.md", content)

    with pytest.raises(ArticleParseError) as caught:
        parse_article_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert complaint in message
    assert "\n" not in message


def test_text_file_with_front_matter_is_read_as_markdown(tmp_path: Path) -> None:
    path = _write(tmp_path / "note.txt", "---\ntitle: From a txt\nlanguage: en\n---\nBody.\n")

    parsed = parse_article_file(path)

    assert (parsed.title, parsed.body, parsed.language) == ("From a txt", "Body.", "en")


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
