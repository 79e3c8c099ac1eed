"""The reach an editor confirms, in words: by language tag, most readers first."""

from __future__ import annotations

from newsletter.subscribers.audience import Reach, by_language_in_words, reach_line


def test_the_reach_by_language_tag() -> None:
    reach = Reach(1, 508, {"pt": 300, "en": 150, "zh": 58})
    assert by_language_in_words(reach) == "pt-PT 300 · en 150 · zh-Hans 58"
    assert reach_line(reach, "Daily digest") == (
        "Will reach 508 readers of Daily digest: pt-PT 300, en 150, zh-Hans 58"
    )


def test_one_reader_and_nobody() -> None:
    assert reach_line(Reach(1, 1, {"en": 1}), "Daily") == "Will reach 1 reader of Daily: en 1"
    assert "no reader" in reach_line(Reach(1, 0, {}), "Daily")
