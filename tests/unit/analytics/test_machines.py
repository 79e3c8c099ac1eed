"""Machine clicks and opens told from readers': HEAD, scanners' agents, bursts, proxies."""

from __future__ import annotations

from dataclasses import replace

from newsletter.analytics.hits import Hit
from newsletter.analytics.machines import EARLY_SECONDS, Reason, judge

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Safari/605.1.15"
T = 1_800_000_000.0


def click(article: int, at: float, *, copy: str = "c:aaaaaaaa", **changes: object) -> Hit:
    hit = Hit(
        kind="click",
        digest_id=1,
        variant_id=2,
        article_id=article,
        arm=None,
        copy=copy,
        subscriber_id=None,
        delivery_id=None,
        at=at,
        head=False,
        agent=BROWSER,
    )
    return replace(hit, **changes)  # type: ignore[arg-type]


def reasons(hits: list[Hit], **kwargs: object) -> list[str | None]:
    return [j.reason for j in judge(hits, **kwargs)]  # type: ignore[arg-type]


def test_a_reader_clicking_two_stories_some_seconds_apart_is_a_reader() -> None:
    assert reasons([click(1, T), click(2, T + 8)]) == [None, None]
    # The same story twice in a row (a double click) is no scan either.
    assert reasons([click(1, T), click(1, T + 0.2)]) == [None, None]


def test_every_link_of_a_copy_at_once_is_a_machine_whatever_its_agent() -> None:
    hits = [click(1, T), click(2, T + 0.3), click(3, T + 0.6), click(4, T + 30)]
    assert reasons(hits) == [Reason.BURST, Reason.BURST, Reason.BURST, None]
    # Two readers' copies clicked in the same second are two readers.
    assert reasons([click(1, T), click(2, T + 0.3, copy="c:bbbbbbbb")]) == [None, None]


def test_head_requests_and_scanners_agents_are_machines() -> None:
    assert reasons([click(1, T, head=True)]) == [Reason.HEAD]
    for agent in ["", "python-requests/2.31", "Mozilla/5.0 (compatible; Barracuda)", "curl/8.1"]:
        assert reasons([click(1, T, agent=agent)]) == [Reason.SCANNER], agent


def test_a_click_seconds_after_its_delivery_is_a_gateways() -> None:
    early = click(1, T + 2, delivery_id=5)
    later = click(1, T + EARLY_SECONDS + 60, delivery_id=6)
    assert reasons([early, later], sent_at={5: T, 6: T}) == [Reason.EARLY, None]


def test_opens_through_apple_and_image_proxies_are_machine_opens() -> None:
    def opened(**changes: object) -> Hit:
        return click(0, T, kind="open", article_id=None, **changes)

    assert reasons([opened()]) == [None]
    assert reasons([opened(apple=True)]) == [Reason.PROXY]
    assert reasons([opened(agent="Mozilla/5.0")]) == [Reason.PROXY]
    assert reasons([opened(agent="Mozilla/5.0 (via ggpht.com GoogleImageProxy)")]) == [Reason.PROXY]
