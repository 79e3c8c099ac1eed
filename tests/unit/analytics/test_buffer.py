"""The file buffer of the embedded default: many writers at once, a drain loses nothing."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from newsletter.analytics.buffer import FileHitBuffer
from newsletter.analytics.hits import Hit
from newsletter.analytics.recording import SETTLE_SECONDS, _settled


def a_hit(n: int, *, at: float = 1_800_000_000.0, copy: str = "c:aaaaaaaa") -> Hit:
    return Hit("click", 1, 2, n, None, copy, None, None, at, False, "Mozilla/5.0 (X11)")


def write_many(path: str, start: int, count: int) -> None:
    buffer = FileHitBuffer(Path(path))
    for n in range(start, start + count):
        buffer.add(a_hit(n))


def test_hits_written_by_several_processes_while_drained_are_each_drained_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hits.jsonl"
    buffer = FileHitBuffer(path)
    writers = [
        multiprocessing.Process(target=write_many, args=(str(path), i * 1000, 400))
        for i in range(3)
    ]
    for writer in writers:
        writer.start()
    drained: list[Hit] = []
    while any(w.is_alive() for w in writers):
        drained += buffer.drain()
    for writer in writers:
        writer.join()
    drained += buffer.drain()
    numbers = [h.article_id for h in drained]
    assert len(numbers) == 1200 and len(set(numbers)) == 1200


def test_hits_given_back_are_drained_again_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "hits.jsonl"
    buffer = FileHitBuffer(path)
    buffer.give_back([a_hit(1), a_hit(2)])
    with path.open("a") as file:
        file.write('{"kind": "cli')  # a writer killed mid-line
    assert [h.article_id for h in buffer.drain()] == [1, 2]
    assert buffer.drain() == []


def test_a_copy_still_being_clicked_waits_so_a_scan_is_judged_whole() -> None:
    now = 1_800_000_100.0
    settled = a_hit(1, at=now - SETTLE_SECONDS - 1, copy="c:settled1")
    busy = [a_hit(1, at=now - 30, copy="c:busybusy"), a_hit(2, at=now - 1, copy="c:busybusy")]
    ready, waiting = _settled([settled, *busy], now)
    assert ready == [settled] and waiting == busy


def test_a_web_process_hands_its_hits_over_in_batches_and_keeps_them_while_away(
    tmp_path: Path,
) -> None:
    from newsletter.analytics.buffer import BatchingHitBuffer

    shared = FileHitBuffer(tmp_path / "hits.jsonl")
    batching = BatchingHitBuffer(shared, seconds=60)
    for n in range(3):
        batching.add(a_hit(n))
    assert shared.drain() == []  # nothing handed over yet: no write per click
    batching.flush()
    assert [h.article_id for h in shared.drain()] == [0, 1, 2]

    class Away(FileHitBuffer):
        def give_back(self, hits: object) -> None:
            raise ConnectionError("Redis is restarting")

    away = BatchingHitBuffer(Away(tmp_path / "other.jsonl"), seconds=60)
    away.add(a_hit(7))
    away.flush()  # fails, and keeps the hit
    away.shared = shared
    away.close()  # the last hand-over, when the web process stops
    batching.close()
    assert [h.article_id for h in shared.drain()] == [7]
