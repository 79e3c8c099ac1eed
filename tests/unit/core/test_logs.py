"""What operators read: addresses masked in errors and status lines, JSON logs one object a
line with the ids of the digest, delivery and reader they are about."""

from __future__ import annotations

import json
import logging

import pytest

from newsletter.cli.status import progress_bar
from newsletter.core.config import get_settings
from newsletter.core.logs import configure_logging, mask_address, mask_addresses


def test_addresses_are_masked_for_operators() -> None:
    assert mask_address("leonor@example.com") == "le…@example.com"
    assert mask_address("li@example.com") == "l…@example.com"
    assert mask_addresses("550 <ana.maria@correio.pt> unknown; 551 zé@mo.mo") == (
        "550 <an…@correio.pt> unknown; 551 z…@mo.mo"
    )
    assert progress_bar(1160, 2000) == "[#######.....] 58%"
    assert progress_bar(0, 0) == "[............] 0%"


def test_json_logs_are_one_object_a_line_with_the_ids(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    level = root.level
    configure_logging(get_settings().model_copy(update={"log_format": "json"}))
    try:
        log = logging.getLogger("newsletter.delivery")
        log.info("batch of %d sent", 50, extra={"digest_id": 3, "delivery_id": 17})
        try:
            raise RuntimeError("relay gone")
        except RuntimeError:
            log.exception("batch failed", extra={"subscriber_id": 9})
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "newsletter"]:
            root.removeHandler(handler)
        root.setLevel(level)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "batch of 50 sent" and first["level"] == "INFO"
    assert first["logger"] == "newsletter.delivery" and first["time"].endswith("+00:00")
    assert (first["digest_id"], first["delivery_id"]) == (3, 17) and "subscriber_id" not in first
    assert second["subscriber_id"] == 9 and "RuntimeError: relay gone" in second["exception"]


def test_text_logs_cannot_be_forged_by_a_crlf_in_what_an_outsider_sent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    level = root.level
    configure_logging(get_settings().model_copy(update={"log_format": "text"}))
    forged = "ana@example.com\r\n2026-01-01 00:00:00,000 INFO forged\u2028\x85\x00"
    try:
        log = logging.getLogger("newsletter.bounces")
        log.info("report for %s refused", forged, extra={"delivery_id": 4})
        try:
            raise ValueError(f"bad header {forged}")
        except ValueError:
            log.exception("cannot read %r", "x\ny")
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "newsletter"]:
            root.removeHandler(handler)
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith(
        "INFO newsletter.bounces: report for ana@example.com\\r\\n"
        "2026-01-01 00:00:00,000 INFO forged\\u2028\\x85\\x00 refused [delivery_id=4]"
    )
    # The traceback's lines are indented under their event: none starts like an event.
    events = [line for line in lines if not line.startswith("    ")]
    assert len(events) == 2 and "cannot read 'x\\ny'" in events[1]
    assert any("INFO forged" in line for line in lines[2:])


def test_the_beats_routine_is_quiet_unless_it_did_something() -> None:
    import logging

    from newsletter.core.logs import QuietRoutine

    quiet = QuietRoutine(frozenset({"newsletter.tick", "newsletter.record_link_hits"}))

    def shown(name: str, message: str, *args: object) -> bool:
        record = logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None)
        return quiet.filter(record)

    routine = [
        ("celery.beat", "Scheduler: Sending due task %s (%s)", "tick", "newsletter.tick"),
        ("celery.worker.strategy", "Task newsletter.tick[1a-2b] received"),
        ("celery.app.trace", "Task newsletter.tick[1a-2b] succeeded in 0.012s: []"),
        ("celery.app.trace", "Task newsletter.record_link_hits[9] succeeded in 0.01s: ''"),
    ]
    for name, message, *args in routine:
        assert not shown(name, message, *args), message
    worth_a_line = [
        ("celery.app.trace", "Task newsletter.tick[1a] succeeded in 0.3s: [12]"),
        ("celery.worker.strategy", "Task newsletter.send_batch[3] received"),
        ("celery.app.trace", "Task newsletter.record_link_hits[9] succeeded in 0.01s: '2 reader'"),
        ("newsletter.tasks", "Task newsletter.tick[1a-2b] received"),  # not Celery's own
    ]
    for name, message in worth_a_line:
        assert shown(name, message), message
