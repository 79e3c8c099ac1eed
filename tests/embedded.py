"""`newsletter up` on the embedded defaults (SQLite, SQLite broker, outbox sink), for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port


@dataclass(frozen=True)
class Service:
    base_url: str
    var: Path
    env: dict[str, str]

    @property
    def outbox(self) -> Path:
        return self.var / "outbox"


@contextmanager
def running_up(var: Path, **settings: str) -> Iterator[Service]:
    """`newsletter up` in its own process group, with no settings but these and free ports."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_VAR_DIR=str(var),
        # No NEWSLETTER_BASE_URL: in development the links follow `up --port`.
        NEWSLETTER_SINK_PORT=str(free_port()),
        NEWSLETTER_BOUNCE_PORT=str(free_port()),
        **settings,
    )
    with serving(
        [sys.executable, "-m", "newsletter", "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        port=port,
        log_path=var / "up.log",
    ):
        yield Service(base, var, env)


@contextmanager
def serving(
    command: list[str], *, cwd: Path, env: dict[str, str], port: int, log_path: Path
) -> Iterator[str]:
    """A `newsletter up` (or `web`) command in its own process group, answering /healthz on
    port within a minute; its base URL. Stopped with SIGTERM after, killed if it hangs."""
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_healthy(base, process, log_path)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                raise


def _wait_until_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"newsletter up did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def newsletter_cli(service: Service, *args: str) -> str:
    """`newsletter ARGS` against the running service's settings; its stdout (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=ROOT,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def emails_to(
    service: Service, address: str, count: int, timeout: float = 30
) -> list[EmailMessage]:
    """The sink's messages to this address, oldest first, once there are at least count."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(service.outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(message, EmailMessage)
            if address in str(message["To"]):
                found.append(message)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"fewer than {count} message(s) to {address}"
        time.sleep(0.3)
