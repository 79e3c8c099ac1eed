"""Reading articles: scraped pages in each language, Markdown with front matter, and files
that are neither (the parsers of newsletter/articles/store.py; storing what they read, on
SQLite and PostgreSQL, is tested in tests/integration/test_articles.py)."""

# Chinese text and typographic breadcrumb separators are the point of several tests.
# ruff: noqa: RUF001

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter.articles.store import (
    ArticleParseError,
    parse_article_file,
    parse_markdown,
    parse_scraped_text,
)
from tests.conftest import ROOT

SEED = ROOT / "seeds" / "000_6fc2d16fc29a7e31.txt"
MARKDOWN_ARTICLE = (ROOT / "tests" / "data" / "articles" / "cimeira.md").read_text(encoding="utf-8")

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


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- The seed article -------------------------------------------------------------------


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


@pytest.mark.parametrize(
    "front_matter",
    ["published_at: 0001-01-01", "published_at: '9999-12-31T23:59:59'", "published_at: 1969-12-31"],
)
def test_markdown_dates_off_the_clocks_years_are_refused(front_matter: str) -> None:
    # Year 1 or 9999 would be stored, then fail every page that shows it in a zone.
    with pytest.raises(ArticleParseError, match="between 1970 and 9000"):
        parse_markdown(f"---\ntitle: T\n{front_matter}\n---\nBody.\n", source="d.md")


def test_markdown_story_ties_translations_together() -> None:
    parsed = parse_markdown("---\ntitle: T\nstory: Macau-Bridge\n---\nBody.\n", source="s.md")
    alone = parse_markdown("---\ntitle: T\n---\nBody.\n", source="a.md")

    assert parsed.story == "macau-bridge"
    assert alone.story is None


@pytest.mark.parametrize("story", ["'macau bridge'", "'article:12'", "[macau, bridge]"])
def test_markdown_story_that_is_not_a_key_is_refused_in_one_line(story: str) -> None:
    with pytest.raises(ArticleParseError, match=r"^s\.md: ") as refused:
        parse_markdown(f"---\ntitle: T\nstory: {story}\n---\nBody.\n", source="s.md")
    assert "\n" not in str(refused.value)


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


def test_crafted_emphasis_runs_are_read_as_text() -> None:
    """64 KB of `**a ` took the hand-written patterns seconds (quadratic; a 2 MB upload,
    hours): read by a linear parser, it is text. Timings: `python -m bench markdown`."""
    crafted = "**a " * (64 * 1024 // 4)

    parsed = parse_markdown(f"# Crafted\n\n{crafted}\n", source="crafted.md")

    assert parsed.body == crafted.strip()


def test_markdown_html_stays_text_and_links_give_only_their_text() -> None:
    parsed = parse_markdown(
        "# Safety\n\n<script>alert(1)</script> &amp; <b>bold</b>\n\n"
        "A [trap](javascript:alert(1)) and ![a *chart*](chart.png), ~~gone~~ "
        "<https://plataforma.example/a> *em* __strong__ `<i>`.\n\n"
        "1. one\n   - nested\n2. two\n\nSetext heading\n---\n\n    indented code *kept*\n",
        source="safety.md",
    )

    assert parsed.body.split("\n\n") == [
        "<script>alert(1)</script> &amp; <b>bold</b>",
        "A trap and a chart, gone https://plataforma.example/a em strong <i>.",
        "1. one\n- nested\n2. two",
        "Setext heading",
        "indented code *kept*",
    ]
