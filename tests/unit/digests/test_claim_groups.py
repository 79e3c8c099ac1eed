"""How big the next claim group is: what the relay takes in GROUP_SECONDS, grown gently."""

from __future__ import annotations

from newsletter.digests.batch import GROUP_SECONDS, next_group_size


def test_a_fast_relay_doubles_the_group_up_to_the_largest() -> None:
    sizes = [1]
    for _ in range(8):
        size = sizes[-1]
        sizes.append(next_group_size(size, size, size * 0.001, largest=32))
    assert sizes == [1, 2, 4, 8, 16, 32, 32, 32, 32]


def test_a_slow_relay_sends_one_message_a_group() -> None:
    assert next_group_size(32, 32, 32 * GROUP_SECONDS, largest=32) == 1
    assert next_group_size(1, 1, 5.0, largest=32) == 1


def test_a_group_holds_what_the_relay_takes_in_group_seconds() -> None:
    # 10 ms a message: ten messages fit, whatever the last group's size.
    assert next_group_size(16, 16, 0.16, largest=32) == 10
    assert next_group_size(8, 4, 0.04, largest=32) == 10  # a group cut short: its pace
    assert next_group_size(4, 4, 0.04, largest=32) == 8  # never more than twice the last
    assert next_group_size(16, 16, 0.0, largest=32) == 32  # a clock that did not move
    assert next_group_size(4, 4, 0.001, largest=1) == 1  # the setting has the last word
