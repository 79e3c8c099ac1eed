"""Fakes of the service's ports, for tests that must see what would leave the process."""

from __future__ import annotations

from typing import Any

from newsletter.app.jobs import Job


class RecordingQueue(dict[str, list[tuple[Any, ...]]]):
    """A queue that keeps each job's arguments under its task's short name ("tick")."""

    def __init__(self, *names: str) -> None:
        super().__init__({name: [] for name in names})
        self.jobs: list[Job] = []

    def send(self, job: Job) -> None:
        self.jobs.append(job)
        self.setdefault(job.task.removeprefix("newsletter."), []).append(job.args)


class BrokenQueue:
    """A broker that is down: every job sent raises, as kombu does when it cannot connect."""

    def send(self, job: Job) -> None:
        raise ConnectionRefusedError(111, "Connection refused")
