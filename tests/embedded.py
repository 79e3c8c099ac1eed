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
        NEWSLETTER_BASE_URL=base,
        NEWSLETTER_SINK_PORT=str(free_port()),
        NEWSLETTER_BOUNCE_PORT=str(free_port()),
        **settings,
    )
    log = (var / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            log.close()
            pytest.fail(f"newsletter up did not come up:\n{(var / 'up.log').read_text()[-3000:]}")
        time.sleep(0.3)
    try:
        yield Service(base, var, env)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        finally:
            log.close()
