"""Fakes of the service's ports, for tests that must see what would leave the process."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from newsletter.app.jobs import Job
from newsletter.sending.transport import DeliveryError


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


class FakeRelays:
    """SMTP relays, for code that takes a transport factory (url -> an SMTP session).

    Each session is recorded by its relay's URL, and each message accepted is kept as
    (relay, envelope sender, recipient, bytes). The DeliveryErrors given are raised by
    the next sends, one each, as SMTPTransport raises a relay's refusal; then every send
    is accepted.
    """

    def __init__(self, *refusals: DeliveryError) -> None:
        self.refusals = list(refusals)
        self.sessions: list[str] = []
        self.accepted: list[tuple[str, str, str, bytes]] = []

    def __call__(self, url: str) -> FakeRelaySession:
        self.sessions.append(url)
        return FakeRelaySession(self, url)


class FakeRelaySession:
    """One session to one of the FakeRelays, opened on enter and closed on exit."""

    def __init__(self, relays: FakeRelays, url: str) -> None:
        self.relays = relays
        self.url = url

    def __enter__(self) -> FakeRelaySession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def send(
        self, *, envelope_from: str, recipient: str, data: bytes, wire_ready: bool = False
    ) -> str:
        if self.relays.refusals:
            raise self.relays.refusals.pop(0)
        self.relays.accepted.append((self.url, envelope_from, recipient, data))
        return "250 accepted"
