"""How big the next claim group is (what the relay takes in GROUP_SECONDS, grown gently),
and the wait for a group's claim."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import Future

import pytest

from newsletter.digests.batch import GROUP_SECONDS, _waited_for, next_group_size


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


class _Interrupted(BaseException):
    """What a signal raises in the main thread: a soft time limit, a Ctrl-C."""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_the_wait_for_a_claim_outlasts_an_interrupt_and_returns_what_it_took() -> None:
    """A claim commits on its own thread whatever happens to the wait for it: the batch
    must still learn what it took, to give it back."""
    claiming: Future[tuple[set[int], float]] = Future()
    claimed = ({1, 2, 3}, 0.0)
    threading.Timer(0.3, claiming.set_result, args=(claimed,)).start()
    interrupts: list[float] = []

    def interrupt(signum: int, frame: object) -> None:
        interrupts.append(time.monotonic())
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        assert _waited_for(claiming) == claimed
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(interrupts) == 1  # the wait was cut short once, and went on


def test_a_claim_that_failed_is_not_waited_for_again() -> None:
    claiming: Future[tuple[set[int], float]] = Future()
    claiming.set_exception(RuntimeError("the database said no"))
    with pytest.raises(RuntimeError, match="said no"):
        _waited_for(claiming)
