"""`newsletter status` as lines: the workers as their heartbeats tell it."""

from __future__ import annotations

from newsletter.cli.status import render


def report(workers: list[dict[str, object]]) -> dict[str, object]:
    return {
        "generated_at": "2026-12-05T10:00:00+00:00",
        "queues": [],
        "workers": workers,
        "sending": [],
        "scheduled": [],
        "errors": [],
    }


def worker(name: str, state: str, seen_at: str, **more: object) -> dict[str, object]:
    return {
        "name": name,
        "state": state,
        "online": state == "online",
        "seen_at": seen_at,
        "processed": 1234,
        "active": 1,
        "tasks": [],
        **more,
    }


def test_online_and_lost_workers_are_told_apart() -> None:
    lines = render(
        report(
            [
                worker(
                    "one@a",
                    "online",
                    "2026-12-05T09:59:58+00:00",
                    tasks=[{"name": "newsletter.send_batch", "args": "7, [500 items]"}],
                ),
                worker("two@b", "lost", "2026-12-05T09:58:55+00:00"),
            ]
        )
    )
    text = "\n".join(lines)
    assert "Workers (1 online)" in text
    assert "one@a" in text and "online" in text and "active 1" in text
    assert "    newsletter.send_batch(7, [500 items])" in lines
    [lost] = [line for line in lines if "two@b" in line]
    assert "lost" in lost and "last heard 1 min 5 s ago" in lost


def test_no_heartbeat_at_all_says_so() -> None:
    lines = render(report([]))
    assert lines[lines.index("Workers (0 online)") + 1].strip().startswith("none has reported")
