"""When `digest send` asks before mailing the list."""

from __future__ import annotations

import pytest

from newsletter.cli.main import asks_before_sending


@pytest.mark.parametrize(
    ("yes", "interactive", "asks"),
    [(False, True, True), (True, True, False), (False, False, False), (True, False, False)],
)
def test_it_asks_only_at_a_terminal_without_yes(yes: bool, interactive: bool, asks: bool) -> None:
    assert asks_before_sending(yes=yes, interactive=interactive) is asks
