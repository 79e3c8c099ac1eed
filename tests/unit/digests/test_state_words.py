"""What a digest's state is called, in one place: banner and progress words agree."""

from __future__ import annotations

from newsletter.core.models import DigestState
from newsletter.digests.reports import banner, progress

NONE = {"total": 0, "queued": 0, "sent": 0, "failed": 0, "skipped": 0, "bounced": 0}


def test_a_scheduled_digest_is_never_said_to_be_sent_now() -> None:
    said = banner(DigestState.SCHEDULED, scheduled_for_local="2026-12-07 07:00 Europe/Lisbon")
    assert said == "Scheduled for 2026-12-07 07:00 Europe/Lisbon."
    assert "now" not in said
    assert banner(DigestState.SENDING) == "Being sent now."
    assert banner(DigestState.DRAFT).startswith("Draft:")


def test_an_empty_digest_says_nothing_to_send_and_why_not_zero_percent() -> None:
    why = "No article was published since the last digest."
    bar = progress(NONE, state=DigestState.EMPTY, note=why)
    assert bar["percent"] == "" and bar["text"] == f"Nothing to send: {why}"
    assert bar["text"] == banner(DigestState.EMPTY, note=why)
    assert progress(NONE, state=DigestState.DRAFT)["text"] == "not started"


def test_a_digest_with_deliveries_counts_them() -> None:
    counts = {**NONE, "total": 4, "sent": 2, "failed": 1, "queued": 1}
    bar = progress(counts, state=DigestState.SENDING)
    assert bar["percent"] == "75%" and bar["sent"] == 50.0
    assert bar["text"] == "2 of 4 sent · 0 bounced · 1 failed"
