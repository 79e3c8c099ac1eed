"""Operators at the console: `newsletter status`, /metrics, /readyz and Flower on a real worker."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from newsletter.app.queue import celery as celery_app
from newsletter.cli.status import render
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Delivery, DeliveryStatus, DigestState
from newsletter.digests import lifecycle
from newsletter.ops import monitoring
from newsletter.subscribers import store as subscribers
from newsletter.tasks import jobs as tasks
from newsletter.web import monitoring as web_monitoring
from tests.conftest import ROOT, Mailbox, free_port
from tests.factories import add_fresh_story

READERS = 40
BOUNCING = "leonor@example.com"


def newsletter_status(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "status", *args],
        cwd=ROOT,
        env={**os.environ, "NEWSLETTER_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def worker_name(worker: subprocess.Popen[bytes]) -> str:
    args = [str(arg) for arg in worker.args]  # type: ignore[union-attr]
    return args[args.index("-n") + 1].replace("%h", socket.gethostname())


def monitored_app() -> FastAPI:
    from newsletter.web.app import create_app

    app = create_app()
    if not any(getattr(route, "path", None) == "/metrics" for route in app.routes):
        app.include_router(web_monitoring.router)
    return app


@pytest.fixture
def in_flight(clean_db: str, worker: subprocess.Popen[bytes], mailbox: Mailbox) -> Iterator[int]:
    """A digest to 40 readers going out slowly (0.2 s a message); the first one bounced."""
    add_fresh_story()
    with db.session_scope() as session:
        for email in [BOUNCING, *(f"slow{n}@example.com" for n in range(READERS - 1))]:
            subscribers.subscribe(
                session,
                subscribers.SignupForm(email=email),
                source="test",
                confirmed=True,
                default_language="en",
                default_time_zone="Europe/Lisbon",
                confirmation_interval=timedelta(minutes=10),
            )
        digest_id = lifecycle.create_digest(session, newsletter_slug="daily").id
    mailbox.rcpt_replies[BOUNCING] = [f"550 5.1.1 <{BOUNCING}>: no such user"]
    # Slow enough that a `newsletter status` process started now finds it still sending.
    mailbox.delay = 0.2
    tasks.tick.delay()
    mailbox.wait_until(lambda: len(mailbox.messages) >= 2)
    # Marks are written a claim group at a time, or within half a second on a slow relay.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not sent_count(digest_id):
        time.sleep(0.1)
    yield digest_id
    mailbox.delay = 0.0
    with db.session_scope() as session:
        if "cancel" in lifecycle.allowed_actions(lifecycle.get_digest(session, digest_id).state):
            lifecycle.cancel(session, digest_id=digest_id)
    wait_until_idle(worker)


def sent_count(digest_id: int) -> int:
    with db.session_scope() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.digest_id == digest_id, Delivery.status == DeliveryStatus.SENT)
            )
            or 0
        )


def wait_until_idle(worker: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Until the worker runs nothing: the next test's counts are its own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session_scope() as session:
            found = monitoring.workers(session, get_settings(), app=celery_app, timeout=0.5)
        mine = [w for w in found if w["name"] == worker_name(worker)]
        if mine and not mine[0]["tasks"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker was still busy after {timeout}s")


def test_status_shows_the_digest_in_flight_the_worker_and_masked_errors(
    in_flight: int, clean_db: str, worker: subprocess.Popen[bytes]
) -> None:
    with db.session_scope() as session:
        later = lifecycle.create_digest(
            session, newsletter_slug="daily", send_at=datetime.now(UTC) + timedelta(days=1)
        ).id
    result = newsletter_status("--json", database_url=clean_db)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    [digest] = [d for d in report["sending"] if d["id"] == in_flight]
    assert digest["state"] == DigestState.SENDING
    counts = digest["counts"]
    assert counts["total"] == READERS and counts["bounced"] == 1
    assert 1 <= counts["sent"] < READERS - 1 and counts["queued"] >= 1
    assert isinstance(digest["per_minute"], int) and digest["per_minute"] >= counts["sent"]

    [online] = [w for w in report["workers"] if w["name"] == worker_name(worker)]
    assert online["online"] and online["state"] == "online"
    assert isinstance(online["processed"], int) and online["concurrency"] == 2
    assert "newsletter.send_batch" in [task["name"] for task in online["tasks"]]
    assert any(task["args"] == f"{in_flight}, [{READERS} items]" for task in online["tasks"])

    [queue] = report["queues"]
    assert queue["queue"] == get_settings().queue
    assert isinstance(queue["ready"], int) and isinstance(queue["unacked"], int)
    assert queue["unacked"] >= 1  # the batch being sent is taken, not yet acknowledged

    assert [d["id"] for d in report["scheduled"]] == [later]
    [error] = report["errors"]
    assert error["status"] == "bounced" and error["address"] == "le…@example.com"
    assert "5.1.1 <le…@example.com>" in error["error"]
    assert BOUNCING not in result.stdout  # no full address, not even in the relay's reply

    text = "\n".join(render(report))
    assert re.search(rf"\[[#.]{{12}}\] \d+% \d+/{READERS} · [\d,]+/min", text), text
    assert worker_name(worker) in text and "newsletter.send_batch" in text


def test_metrics_need_the_token_and_show_the_gauges(
    in_flight: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(monitored_app()) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401
        # Words for a scraper (Prometheus sends a text Accept), not an HTML page.
        assert refused.headers["content-type"].startswith("text/plain")
        assert refused.text.startswith("Metrics need the admin token")
        assert refused.headers["www-authenticate"] == "Bearer"
        as_json = client.get("/metrics", headers={"Accept": "application/json"})
        assert as_json.status_code == 401 and "admin token" in as_json.json()["detail"]
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        response = client.get(
            "/metrics", headers={"Authorization": f"Bearer {get_settings().admin_token}"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        body = response.text
        families = {f.name: f for f in text_string_to_metric_families(body)}

        assert 'newsletter_digests{state="sending"} 1.0' in body
        assert 'newsletter_digests{state="sent"} 0.0' in body
        sending = {
            s.labels["status"]: s.value
            for s in families["newsletter_digest_deliveries"].samples
            if s.labels["digest_id"] == str(in_flight)
        }
        assert sending.get("sent", 0) >= 1 and sending["bounced"] == 1
        [ready] = families["newsletter_queue_ready"].samples
        [unacked] = families["newsletter_queue_unacked"].samples
        assert ready.labels == {"queue": get_settings().queue} and ready.value == int(ready.value)
        assert unacked.value >= 1
        assert families["newsletter_broker_up"].samples[0].value == 1
        assert families["newsletter_database_up"].samples[0].value == 1
        for counter in (
            "newsletter_deliveries_total",
            "newsletter_smtp_replies_total",
            "newsletter_bounces_total",
            "newsletter_signups_total",
            "newsletter_confirmations_total",
            "newsletter_unsubscribes_total",
            "newsletter_send_seconds_bucket",
        ):
            assert counter in body
        assert 'newsletter_smtp_replies_total{class="dropped"}' in body

        # A scraper on an allowed host needs no token.
        allowed = get_settings().model_copy(update={"metrics_allow_hosts": ["testclient"]})
        monkeypatch.setattr(web_monitoring, "get_settings", lambda: allowed)
        assert client.get("/metrics").status_code == 200


def test_counters_from_every_process_add_up(clean_db: str) -> None:
    """What one process counts, the scrape served by another sees (multiprocess mode)."""
    from newsletter.ops import gauges

    code = (
        "from newsletter.core import metrics\n"
        "metrics.count_delivery('sent'); metrics.count_delivery('sent')\n"
        "metrics.count_smtp_reply(451); metrics.count_smtp_reply(None)\n"
        "metrics.observe_send(0.2); metrics.count_signup()\n"
    )
    with db.session_scope() as session:
        before = _samples(gauges.render_metrics(session, get_settings())[0])
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
    with db.session_scope() as session:
        after = _samples(gauges.render_metrics(session, get_settings())[0])

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert grew("newsletter_deliveries_total", status="sent") == 2
    assert grew("newsletter_smtp_replies_total", **{"class": "4xx"}) == 1
    assert grew("newsletter_smtp_replies_total", **{"class": "dropped"}) == 1
    assert grew("newsletter_send_seconds_count") == 1
    assert grew("newsletter_send_seconds_bucket", le="0.25") == 1
    assert grew("newsletter_signups_total") == 1


def test_readyz_says_ready_and_then_which_part_is_missing(
    clean_db: str,
    worker: subprocess.Popen[bytes],
    mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = {"Authorization": f"Bearer {get_settings().admin_token}"}
    with TestClient(monitored_app()) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ready",
            "checks": {part: {"ok": True} for part in ("database", "broker", "smtp", "workers")},
        }
        detailed = client.get("/readyz", headers=admin).json()["checks"]
        assert worker_name(worker) in detailed["workers"]["workers"]
        assert client.get("/healthz").status_code == 200  # liveness stays where it was

        closed = free_port()
        monkeypatch.setattr(get_settings(), "smtp_url", f"smtp://127.0.0.1:{closed}")
        started = time.monotonic()
        not_ready = client.get("/readyz")
        assert time.monotonic() - started < 5
        assert not_ready.status_code == 503
        body = not_ready.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["smtp"] == {"ok": False}  # the public answer names no hosts
        assert all(body["checks"][part]["ok"] for part in ("database", "broker", "workers"))
        detailed = client.get("/readyz", headers=admin).json()["checks"]
        assert detailed["smtp"]["relay"] == f"127.0.0.1:{closed}"
        assert "ConnectionRefusedError" in detailed["smtp"]["error"]


def test_flower_sees_the_worker(clean_db: str, worker: subprocess.Popen[bytes]) -> None:
    port = free_port()
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": clean_db,
        "FLOWER_UNAUTHENTICATED_API": "true",
    }
    flower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        seen: object = None
        while time.monotonic() < deadline:
            assert flower.poll() is None, flower.stdout.read().decode()  # type: ignore[union-attr]
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/api/workers", params={"refresh": 1}, timeout=5
                )
            except httpx.TransportError:
                time.sleep(0.3)
                continue
            seen = response.json() if response.status_code == 200 else response.status_code
            if isinstance(seen, dict) and worker_name(worker) in seen:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"Flower never listed {worker_name(worker)}: {seen}")
    finally:
        flower.terminate()
        try:
            flower.wait(timeout=10)
        except subprocess.TimeoutExpired:
            flower.kill()
            flower.wait()


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_the_access_log_keeps_no_searched_address_and_no_reader_token(tmp_path: Path) -> None:
    """uvicorn logs each request's path: a dashboard search (?q=ana@…) or a reader's link
    (/unsubscribe/<token>) would put an address or a usable token in the log."""
    port = free_port()
    env = {**os.environ, "NEWSLETTER_VAR_DIR": str(tmp_path)}
    web = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "web", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    token = "eyJzIjoxMiwicCI6InVuc3Vic2NyaWJlIn0.c2lnbmF0dXJl"
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the web process did not start"
                time.sleep(0.2)
        httpx.get(f"{base}/admin/subscribers?q=ana.maria%40correio.pt", timeout=10)
        httpx.get(f"{base}/unsubscribe/{token}", timeout=10)
        httpx.get(f"{base}/behind/a/proxy/unsubscribe/{token}", timeout=10)  # a prefix
        httpx.get(f"{base}/admin/x%0A2026-01-01 00:00:00 INFO forged line", timeout=10)
    finally:
        web.terminate()
        _, err = web.communicate(timeout=30)
    log = err.decode()
    assert '"GET /admin/subscribers?… HTTP/1.1"' in log
    assert '"GET /unsubscribe/… HTTP/1.1" 400' in log
    assert "ana.maria" not in log and token not in log
    assert '"GET /behind/a/proxy/unsubscribe/… HTTP/1.1" 404' in log
    assert "\n2026-01-01 00:00:00 INFO forged line" not in log
    assert "/admin/x%0A2026-01-01 00:00:00 INFO forged line" in log
