"""`newsletter status`: queues, workers, digests in flight and recent errors at a glance."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

BAR_WIDTH = 12


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--timeout",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.1, 30),
    help="Seconds to wait for the workers to answer.",
)
def status_command(as_json: bool, timeout: float) -> None:
    """What the service is doing now: queues, workers, digests being sent, last errors."""
    from newsletter.app.queue import celery
    from newsletter.core.config import get_settings
    from newsletter.core.db import session_scope
    from newsletter.ops import monitoring

    settings = get_settings()
    with session_scope() as session:
        report = monitoring.status(session, celery, settings.broker_url, timeout=timeout)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
        return
    for line in render(report):
        click.echo(line)


def render(report: dict[str, Any]) -> list[str]:
    """The report as lines for a terminal, one section after another."""
    lines = ["Queues"]
    for queue in report["queues"]:
        lines.append(
            f"  {queue['queue']:<14} ready {_number(queue['ready']):>7}   "
            f"unacked {_number(queue['unacked']):>7}"
            + (f"   ({queue.get('error') or queue['note']})" if _remark(queue) else "")
        )
    online = [w for w in report["workers"] if w.get("online")]
    lines.append(f"Workers ({len(online)} online)")
    if not report["workers"]:
        lines.append("  none has reported a heartbeat in the last hour")
    for worker in report["workers"]:
        seen = _ago(report["generated_at"], worker["seen_at"])
        lines.append(
            f"  {worker['name']:<30} {worker['state']:<8} processed {worker['processed']:>7,}   "
            + (f"active {worker['active']}" if worker["online"] else f"last heard {seen} ago")
        )
        for task in worker.get("tasks", []):
            lines.append(f"    {task['name']}({task['args']})")
    lines.append(f"Sending ({len(report['sending'])})")
    for digest in report["sending"]:
        lines.extend(_digest_lines(digest))
    lines.append(f"Scheduled ({len(report['scheduled'])})")
    # Digests waiting for their time, waves, and each recurring schedule's next run.
    for send in report["scheduled"]:
        lines.append(f"  {send['words']}")
    for newsletter in report.get("waves", []):
        lines.append(f"Waves of {newsletter['newsletter']} (each reader's own clock)")
        if not newsletter["waves"]:
            lines.append("  none from a day ago to a day ahead")
        for wave in newsletter["waves"]:
            lines.append("  " + wave_line(wave))
    lines.append(f"Last errors ({len(report['errors'])})")
    for error in report["errors"]:
        at = error["at"][:19].replace("T", " ")
        lines.append(
            f"  {at}  #{error['digest_id']} delivery {error['delivery_id']} {error['status']} "
            f"{error['address'] or '(erased)'}: {error['error']}"
        )
    return lines


def wave_line(wave: dict[str, Any]) -> str:
    """`07:00 2026-12-05 UTC+8 Asia/Macau  2026-12-04 23:00 UTC  2 reader(s)  sent`."""
    utc_time = wave["utc"][:16].replace("T", " ")
    zones = ", ".join(wave["zones"]) or "(no reader's zone now)"
    return (
        f"{wave['local_time']} {wave['local_day']} {wave['utc_offset']:<9} {zones:<32} "
        f"{utc_time} UTC  {wave['readers']:>6,} reader(s)  {wave['state']}"
        + (f"  #{wave['digest_id']}" if wave["digest_id"] else "")
    )


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[#######.....] 58%`: how much of a digest has been dealt with."""
    filled = min(width, round(done * width / total)) if total else 0
    percent = done * 100 // total if total else 0
    return f"[{'#' * filled}{'.' * (width - filled)}] {percent}%"


def _digest_lines(digest: dict[str, Any]) -> list[str]:
    counts = digest["counts"]
    done = counts["total"] - counts["queued"]
    subject = f"  “{digest['subject']}”" if digest.get("subject") else ""
    rest = ", ".join(
        f"{counts[name]:,} {name}" for name in ("bounced", "failed", "skipped") if counts[name]
    )
    return [
        f"  #{digest['id']} {digest['newsletter']} {digest['state']}{subject}",
        f"    {progress_bar(done, counts['total'])} {done:,}/{counts['total']:,} "
        f"· {digest['per_minute']:,}/min" + (f"  ({rest})" if rest else ""),
    ]


def _ago(now: str, then: str) -> str:
    """`2 min 5 s`: how long ago `then` was, both ISO 8601 moments."""
    seconds = max(
        0, int((datetime.fromisoformat(now) - datetime.fromisoformat(then)).total_seconds())
    )
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _number(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _remark(queue: dict[str, Any]) -> bool:
    return bool(queue.get("error") or queue.get("note"))
