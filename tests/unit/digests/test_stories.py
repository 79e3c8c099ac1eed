"""One story, several languages: which version of each story a reader gets.

The history of stories, read from deliveries on SQLite and PostgreSQL, is tested in
tests/integration/test_digests.py and, with a worker and SMTP, in test_stories.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.articles.store import clean_story, story_key
from newsletter.core.models import Article
from newsletter.core.validation import InvalidInput
from newsletter.digests.composer import Reader, Shaping, select_articles

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def version(
    article_id: int, language: str, story: str | None = None, topics: tuple[str, ...] = ()
) -> Article:
    return Article(
        id=article_id,
        title=f"{story or 'own'} ({language})",
        language=language,
        story=story,
        topics=list(topics),
        published_at=NOW,
    )


def chosen(
    reader: Reader, candidates: list[Article], *, fallback: str = "en", cap: int = 10
) -> list[int]:
    return list(
        select_articles(reader, candidates, fallback_language=fallback, cap=cap).article_ids
    )


def reader(language: str, **history: frozenset[int] | frozenset[str]) -> Reader:
    return Reader(1, language, frozenset(), **history)  # type: ignore[arg-type]


BRIDGE_EN = version(1, "en", "macau-bridge")
BRIDGE_PT = version(2, "pt", "macau-bridge")
BRIDGE_ZH = version(3, "zh", "macau-bridge")


def test_each_reader_gets_the_version_in_their_language() -> None:
    candidates = [BRIDGE_EN, BRIDGE_PT, BRIDGE_ZH]
    assert chosen(reader("pt"), candidates) == [2]
    assert chosen(reader("zh"), candidates) == [3]
    assert chosen(reader("en"), candidates) == [1]


def test_without_their_language_the_newsletters_version_else_nothing() -> None:
    assert chosen(reader("zh"), [BRIDGE_EN, BRIDGE_PT]) == [1]
    assert chosen(reader("zh"), [BRIDGE_EN, BRIDGE_PT], fallback="pt") == [2]
    assert chosen(reader("zh"), [BRIDGE_PT], fallback="en") == []


def test_a_story_comes_once_in_a_digest() -> None:
    second_pt = version(4, "pt", "macau-bridge")  # a corrected copy, say
    assert chosen(reader("pt"), [BRIDGE_PT, second_pt, BRIDGE_EN]) == [2]
    assert chosen(reader("zh"), [BRIDGE_PT, second_pt, BRIDGE_EN]) == [1]


def test_the_choice_is_per_story_not_for_the_whole_digest() -> None:
    # Before stories, a Portuguese reader with any Portuguese article got only those.
    lisbon_en = version(5, "en")  # a story with no Portuguese version
    assert chosen(reader("pt"), [BRIDGE_EN, lisbon_en, BRIDGE_PT]) == [5, 2]


def test_a_story_read_in_one_language_is_not_offered_in_another() -> None:
    had_pt = reader("pt", stories_read=frozenset({"macau-bridge"}))
    assert chosen(had_pt, [BRIDGE_EN]) == []
    assert chosen(had_pt, [BRIDGE_EN, BRIDGE_PT]) == []
    # Having one version, by id, is having the story too.
    assert chosen(reader("en", already_sent=frozenset({2})), [BRIDGE_EN, BRIDGE_PT]) == []


def test_articles_without_a_story_are_each_their_own() -> None:
    first, second = version(6, "en"), version(7, "en")
    assert story_key(first) == "article:6"
    assert chosen(reader("en"), [first, second]) == [6, 7]
    assert chosen(reader("en", already_sent=frozenset({6})), [first, second]) == [7]


def test_a_story_is_on_the_readers_topics_when_any_version_is() -> None:
    tagged_en = version(8, "en", "tram-strike", topics=("lisboa",))
    untagged_pt = version(9, "pt", "tram-strike")
    elsewhere = version(10, "pt", "rain", topics=("porto",))
    picky = Reader(1, "pt", frozenset({"lisboa"}))
    assert chosen(picky, [tagged_en, untagged_pt, elsewhere]) == [9]


def test_stories_keep_the_candidates_order_and_the_cap() -> None:
    candidates = [version(20 + n, "en", f"story-{n}") for n in range(5)]
    candidates += [version(30 + n, "pt", f"story-{n}") for n in range(5)]
    assert chosen(reader("pt"), candidates, cap=3) == [30, 31, 32]
    assert chosen(reader("en"), candidates, cap=3) == [20, 21, 22]


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("macau-bridge", "macau-bridge"),
        ("  Macau-Bridge ", "macau-bridge"),
        ("", None),
        (None, None),
    ],
)
def test_story_keys_are_short_slugs(typed: str | None, kept: str | None) -> None:
    assert clean_story(typed) == kept


@pytest.mark.parametrize(
    "typed", ["article:12", "macau bridge", "macau--bridge", "-macau", "x" * 101, "ponte-é"]
)
def test_other_story_keys_are_refused_with_a_sentence(typed: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        clean_story(typed)
    assert refused.value.field == "story"
    assert "lower-case letters and digits joined by single dashes" in refused.value.message


def test_a_pinned_story_reaches_readers_of_other_topics_first_in_their_language() -> None:
    # Candidates as candidate_articles gives them: the pinned stories first, in order.
    sport = version(10, "pt", "derby", topics=("sport",))
    bridge_pt = version(2, "pt", "macau-bridge", topics=("macau",))
    bridge_en = version(1, "en", "macau-bridge", topics=("macau",))
    markets = version(11, "pt", "markets", topics=("economy",))
    candidates = [bridge_pt, bridge_en, markets, sport]
    sports_fan = Reader(1, "pt", frozenset({"sport"}))
    pinned = Shaping(pinned=(1,))  # the English version pins the story in every language
    picked = select_articles(sports_fan, candidates, fallback_language="en", cap=10, shaping=pinned)
    assert list(picked.article_ids) == [2, 10]
    # Without the pin, the story is off their topics.
    assert chosen(sports_fan, candidates) == [10]


def test_a_pinned_story_the_reader_had_already_stays_out_and_counts_within_the_cap() -> None:
    bridge = version(2, "pt", "macau-bridge")
    others = [version(20 + i, "pt") for i in range(3)]
    pinned = Shaping(pinned=(2,))
    had_it = Reader(1, "pt", frozenset(), stories_read=frozenset({"macau-bridge"}))
    assert list(
        select_articles(
            had_it, [bridge, *others], fallback_language="en", cap=10, shaping=pinned
        ).article_ids
    ) == [20, 21, 22]
    fresh = Reader(2, "pt", frozenset())
    assert list(
        select_articles(
            fresh, [bridge, *others], fallback_language="en", cap=2, shaping=pinned
        ).article_ids
    ) == [2, 20]
