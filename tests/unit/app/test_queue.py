"""The queue, without a service: jobs by the names of real tasks, a unit of work that sends
only after its commit, and a Celery app configured by whoever sends, never by an import."""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.app import jobs
from newsletter.app.unit_of_work import UnitOfWork
from tests.conftest import ROOT
from tests.fakes import BrokenQueue, RecordingQueue


class FakeSession:
    """Says what happened, in order, and can refuse to commit as a database would."""

    def __init__(self, events: list[str], *, commit_fails: bool = False) -> None:
        self.events = events
        self.commit_fails = commit_fails

    def commit(self) -> None:
        if self.commit_fails:
            raise RuntimeError("the database refused the commit")
        self.events.append("commit")

    def rollback(self) -> None:
        self.events.append("rollback")


class EventQueue(RecordingQueue):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def send(self, job: jobs.Job) -> None:
        self.events.append(f"send {job.task}")
        super().send(job)


def unit_of_work(*, commit_fails: bool = False) -> tuple[UnitOfWork, list[str]]:
    events: list[str] = []
    session = FakeSession(events, commit_fails=commit_fails)
    return UnitOfWork(session, EventQueue(events)), events  # type: ignore[arg-type]


def test_jobs_are_sent_after_the_commit_in_the_order_given() -> None:
    work, events = unit_of_work()
    work.enqueue(jobs.send_batch(7, [1, 2]))
    work.enqueue(jobs.tick())
    assert events == []
    work.commit()
    assert events == ["commit", "send newsletter.send_batch", "send newsletter.tick"]
    work.commit()  # sent once: the next commit has nothing to send
    assert events[-1] == "commit" and events.count("send newsletter.tick") == 1


def test_a_rollback_forgets_the_jobs() -> None:
    work, events = unit_of_work()
    work.enqueue(jobs.send_confirmation(1))
    work.rollback()
    work.commit()
    assert events == ["rollback", "commit"]


def test_a_commit_that_fails_sends_nothing() -> None:
    work, events = unit_of_work(commit_fails=True)
    work.enqueue(jobs.send_confirmation(1))
    with pytest.raises(RuntimeError):
        work.commit()
    work.rollback()
    assert events == ["rollback"]


def test_a_nudge_the_broker_refuses_is_logged_and_anything_else_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    work = UnitOfWork(FakeSession([]), BrokenQueue())  # type: ignore[arg-type]
    work.enqueue(jobs.tick())
    with caplog.at_level(logging.WARNING, logger="newsletter.app"):
        work.commit()
    assert "could not queue newsletter.tick" in caplog.text
    work.enqueue(jobs.send_confirmation(1))
    with pytest.raises(ConnectionRefusedError):
        work.commit()


def test_every_job_names_a_task_the_worker_has() -> None:
    from newsletter.app.queue import celery
    from newsletter.tasks import jobs as tasks

    assert tasks.send_batch.app is celery
    # An argument for each parameter a job takes (a new one must be added here).
    sample = {
        "subscriber_id": 1,
        "newsletter_ids": [1],
        "digest_id": 1,
        "delivery_ids": [1],
        "raw_base64": "",
        "recipients": [],
        "form": {"email": "ana@example.com"},
        "ip": "192.0.2.1",
        "action": "export",
        "test_send_id": 1,
    }
    made = [
        make(**{name: sample[name] for name in inspect.signature(make).parameters})
        for make in vars(jobs).values()
        if inspect.isfunction(make) and make.__module__ == jobs.__name__
    ]
    assert len(made) >= 7
    for job in made:
        assert job.task in celery.tasks, job.task


def test_importing_the_tasks_creates_nothing_and_reads_no_settings(tmp_path: Path) -> None:
    """Only the worker entry point, the CLI and the web app factory configure Celery."""
    var = tmp_path / "var"
    var.mkdir()
    code = (
        "import json, newsletter.tasks, newsletter.tasks.jobs\n"
        "from newsletter.app.queue import celery\n"
        "from newsletter.core.config import get_settings\n"
        "print(json.dumps({'settings_read': get_settings.cache_info().misses,\n"
        "    'broker': celery.conf.broker_url, 'queue': celery.conf.task_default_queue}))\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "PROMETHEUS_MULTIPROC_DIR" and not key.startswith("NEWSLETTER_")
    }
    env["NEWSLETTER_VAR_DIR"] = str(var)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout)
    assert seen["settings_read"] == 0
    assert seen["queue"] != "newsletter"  # Celery's default: nobody configured it
    assert list(var.iterdir()) == []  # no database, no secrets, no metrics folder


def worker_module_says(code: str, var: Path, **settings: str) -> list[str]:
    """What code prints after `import worker` in a new process with these settings."""
    env = {**os.environ, "NEWSLETTER_VAR_DIR": str(var)}
    env.update({f"NEWSLETTER_{name.upper()}": value for name, value in settings.items()})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", f"import worker\n{code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


def test_the_worker_entry_point_configures_the_app(tmp_path: Path) -> None:
    code = (
        "print(worker.app.conf.broker_url, worker.app.conf.task_default_queue)\n"
        "from newsletter.app.queue import celery\n"
        "assert worker.app is celery\n"
    )
    said = worker_module_says(code, tmp_path, queue="mine")
    assert said == [os.environ["NEWSLETTER_BROKER_URL"], "mine"]


@pytest.mark.parametrize(
    ("database", "broker", "pool"),
    [
        ("", "", "threads"),  # the defaults: SQLite and the embedded broker on SQLite
        ("sqlite:///x.db", "redis://127.0.0.1:6379/0", "threads"),
        ("postgresql+psycopg://u@h/db", "", "threads"),  # the embedded broker is SQLite
        ("postgresql+psycopg://u@h/db", "sqlalchemy+sqlite:////tmp/b.db", "threads"),
        ("postgresql+psycopg://u@h/db", "redis://127.0.0.1:6379/0", "prefork"),
    ],
)
def test_the_worker_forks_no_pool_where_sqlite_is(
    tmp_path: Path, database: str, broker: str, pool: str
) -> None:
    """SQLite's locks do not survive a fork (tests/integration/test_worker_pool.py)."""
    said = worker_module_says(
        "print(worker.app.conf.worker_pool)", tmp_path, database_url=database, broker_url=broker
    )
    assert said == [pool]
