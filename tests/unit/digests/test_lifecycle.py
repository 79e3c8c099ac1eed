"""The digest's state machine: what each state allows, and pause, resume and cancel refusing
what it does not allow, on digests held in memory (the same moves on SQLite and
PostgreSQL, and how a send ends: tests/integration/test_lifecycle.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from newsletter.core.models import Digest, DigestState
from newsletter.digests import lifecycle

NOW = datetime(2026, 12, 4, 7, 0, tzinfo=UTC)
MOVES: dict[str, Callable[..., Any]] = {
    "pause": lifecycle.pause,
    "resume": lifecycle.resume,
    "cancel": lifecycle.cancel,
    "schedule": lifecycle.schedule,
}


class DigestsInMemory:
    """A session that holds digests in memory and offers get() and flush() only: all that a
    refused move, a pause, or the resuming of a digest paused before its time use. A move
    that queried the database would fail here, loudly, rather than pass unseen."""

    def __init__(self, *digests: Digest) -> None:
        self.digests = {digest.id: digest for digest in digests}
        self.flushes = 0

    def get(self, model: type[Digest], digest_id: int) -> Digest | None:
        assert model is Digest
        return self.digests.get(digest_id)

    def flush(self) -> None:
        self.flushes += 1


def a_digest(state: str, paused_from: str | None = None) -> tuple[Any, Digest]:
    digest = Digest(id=5, newsletter_id=1, state=state, paused_from=paused_from)
    return DigestsInMemory(digest), digest


def test_each_state_allows_what_an_editor_expects() -> None:
    allowed = {state: sorted(lifecycle.allowed_actions(state)) for state in DigestState}
    assert allowed == {
        DigestState.DRAFT: ["cancel", "schedule"],
        DigestState.SCHEDULED: ["cancel", "pause"],
        DigestState.SENDING: ["cancel", "pause"],
        DigestState.PAUSED: ["cancel", "resume"],
        DigestState.SENT: [],
        DigestState.CANCELLED: [],
        DigestState.FAILED: [],
        DigestState.EMPTY: [],
    }
    assert {
        DigestState.SENT,
        DigestState.CANCELLED,
        DigestState.FAILED,
        DigestState.EMPTY,
    } == lifecycle.FINAL_STATES


def test_a_state_the_machine_does_not_know_allows_nothing() -> None:
    assert lifecycle.allowed_actions("archived") == frozenset()


@pytest.mark.parametrize(
    ("state", "move"),
    [
        (state, move)
        for state in DigestState
        for move in MOVES
        if move not in lifecycle.allowed_actions(state)
    ],
)
def test_a_move_its_state_does_not_allow_is_refused_and_changes_nothing(
    state: DigestState, move: str
) -> None:
    session, digest = a_digest(state, paused_from=DigestState.SENDING)
    with pytest.raises(lifecycle.DigestActionError, match=f"Digest 5 is {state}"):
        MOVES[move](session, digest_id=5)
    assert (digest.state, digest.paused_from, digest.finished_at) == (
        state,
        DigestState.SENDING,
        None,
    )


@pytest.mark.parametrize("state", [DigestState.SCHEDULED, DigestState.SENDING])
def test_a_pause_remembers_the_state_it_paused(state: DigestState) -> None:
    session, digest = a_digest(state)
    assert lifecycle.pause(session, digest_id=5) is digest
    assert (digest.state, digest.paused_from) == (DigestState.PAUSED, state)
    assert session.flushes == 1


def test_a_draft_is_scheduled_for_its_time_or_now() -> None:
    session, digest = a_digest(DigestState.DRAFT)
    later = NOW + timedelta(hours=3)
    assert lifecycle.schedule(session, digest_id=5, send_at=later, now=NOW) is digest
    assert (digest.state, digest.scheduled_for) == (DigestState.SCHEDULED, later)
    session, digest = a_digest(DigestState.DRAFT)
    lifecycle.schedule(session, digest_id=5, now=NOW)
    assert (digest.state, digest.scheduled_for) == (DigestState.SCHEDULED, NOW)


def test_a_digest_paused_before_its_time_resumes_scheduled_with_nothing_to_send() -> None:
    session, digest = a_digest(DigestState.PAUSED, paused_from=DigestState.SCHEDULED)
    assert lifecycle.resume(session, digest_id=5) == (digest, [])
    assert (digest.state, digest.paused_from) == (DigestState.SCHEDULED, None)


@pytest.mark.parametrize("move", sorted(MOVES))
def test_a_digest_that_does_not_exist_is_named_in_the_refusal(move: str) -> None:
    with pytest.raises(lifecycle.UnknownDigest, match="There is no digest 9"):
        MOVES[move](DigestsInMemory(), digest_id=9)


def test_a_digest_with_nothing_to_send_ends_empty_and_says_why() -> None:
    _, undispatched = a_digest(DigestState.SENDING)
    lifecycle.finish_empty(undispatched, NOW, "no new articles since the last digest")
    assert (undispatched.state, undispatched.note) == (
        DigestState.EMPTY,
        "no new articles since the last digest",
    )
    assert undispatched.finished_at == undispatched.dispatched_at == NOW
    _, dispatched = a_digest(DigestState.SENDING)
    dispatched.dispatched_at = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
    lifecycle.finish_empty(dispatched, NOW, "every reader was skipped")
    assert dispatched.dispatched_at == datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
    assert dispatched.finished_at == NOW
