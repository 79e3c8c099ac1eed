"""A private stack for one drill: PostgreSQL cluster, Redis, SMTP server, workers, beat, web.

Nothing here touches the machine's shared PostgreSQL (5432) or Redis (6379): the drill
restarts what it owns, on free ports, in a temporary directory removed at the end.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


class Stack:
    """Start with `up()`, stop with `down()`; `env` is what every process of it reads."""

    def __init__(self, *, name: str, smtp_faults: dict[str, object], settings: dict[str, str]):
        self.dir = Path(tempfile.mkdtemp(prefix=f"drill-{name}-"))
        self.var = self.dir / "var"
        self.var.mkdir()
        self.pg_port, self.redis_port, self.smtp_port = free_port(), free_port(), free_port()
        self.web_port = free_port()
        self.smtp_log = self.dir / "smtp.jsonl"
        self.smtp_control = self.dir / "smtp-control.json"
        self.smtp_control.write_text("{}")
        self.smtp_faults = smtp_faults
        self.env = {
            **os.environ,
            "NEWSLETTER_VAR_DIR": str(self.var),
            "NEWSLETTER_DATABASE_URL": (
                f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/newsletter"
            ),
            "NEWSLETTER_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "NEWSLETTER_QUEUE": f"drill-{name}-{uuid.uuid4().hex[:6]}",
            "NEWSLETTER_FROM_ADDRESS": "news@plataforma.test",
            "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{self.web_port}",
            "NEWSLETTER_SECRET_KEY": "drill-secret-" + uuid.uuid4().hex,
            "NEWSLETTER_ADMIN_TOKEN": "drill-admin-" + uuid.uuid4().hex,
            "NEWSLETTER_RETRY_BASE_SECONDS": "1",
            "NEWSLETTER_RETRY_MAX_SECONDS": "8",
            "NEWSLETTER_STALE_AFTER_SECONDS": "20",
            "NEWSLETTER_SMTP_TIMEOUT_SECONDS": "10",
            "NEWSLETTER_LOG_FORMAT": "text",
            "PROMETHEUS_MULTIPROC_DIR": str(self.var / "metrics"),
            **settings,
        }
        self.workers: list[subprocess.Popen[bytes] | None] = [None, None]
        self.others: list[subprocess.Popen[bytes]] = []
        self.redis: subprocess.Popen[bytes] | None = None
        self.smtp: subprocess.Popen[bytes] | None = None
        self.pg_bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
        self.pg_data = self.dir / "pg"
        self.kills = 0
        self.restarts = 0

    # --- services ----------------------------------------------------------------

    def up(self) -> None:
        self.start_postgres(init=True)
        self.start_redis()
        self.start_smtp()

    def start_postgres(self, *, init: bool = False) -> None:
        if init:
            if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to postgres
                shutil.chown(self.dir, "postgres")
            self._as_postgres(
                [
                    str(self.pg_bin / "initdb"),
                    "-D",
                    str(self.pg_data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            )
        self._as_postgres(
            [
                str(self.pg_bin / "pg_ctl"),
                "-D",
                str(self.pg_data),
                "-l",
                str(self.dir / "pg.log"),
                "-w",
                "-t",
                "60",
                "-o",
                self._pg_options(),
                "start",
            ]
        )
        if init:
            self._as_postgres(
                [
                    str(self.pg_bin / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.pg_port),
                    "-U",
                    "postgres",
                    "newsletter",
                ]
            )

    def stop_postgres(self, mode: str = "fast") -> None:
        self._as_postgres(
            [str(self.pg_bin / "pg_ctl"), "-D", str(self.pg_data), "-m", mode, "-w", "stop"],
            check=False,
        )

    def restart_postgres(self, down_seconds: float = 2.0) -> None:
        self.stop_postgres("fast")
        time.sleep(down_seconds)
        self.start_postgres()
        self.restarts += 1

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=self._log("redis"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.redis_port)

    def restart_redis(self, down_seconds: float = 2.0) -> None:
        """Kill Redis and start it again empty: every queued and unacked task is gone."""
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait()
        time.sleep(down_seconds)
        self.start_redis()
        self.restarts += 1

    def start_smtp(self) -> None:
        self.smtp = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "drills.smtpd",
                "--port",
                str(self.smtp_port),
                "--log",
                str(self.smtp_log),
                "--control",
                str(self.smtp_control),
                "--config",
                json.dumps(self.smtp_faults),
            ],
            cwd=ROOT,
            stdout=self._log("smtp"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.smtp_port)

    def smtp_hang(self, hang: bool) -> None:
        self.smtp_control.write_text(json.dumps({"hang": hang}))

    # --- the newsletter's processes --------------------------------------------------

    def start_worker(self, index: int) -> None:
        """One `celery -A worker worker` with one pool process, in its own process group: a
        machine of its own, with its own var/ folder and host name, on the shared services."""
        machine = self.dir / f"machine-{index}"
        (machine / "metrics").mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "NEWSLETTER_VAR_DIR": str(machine),
            "PROMETHEUS_MULTIPROC_DIR": str(machine / "metrics"),
        }
        self.workers[index] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "worker",
                "--loglevel=INFO",
                "--concurrency=1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"drill{index}-{uuid.uuid4().hex[:4]}@machine-{index}",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log(f"worker{index}"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_worker(self, index: int) -> None:
        """SIGKILL the worker and its pool process at once, as a machine that vanished."""
        process = self.workers[index]
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self.workers[index] = None
        self.kills += 1

    def start_beat(self) -> None:
        self.others.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker",
                    "beat",
                    "--loglevel=INFO",
                    "-s",
                    str(self.var / "celerybeat-schedule"),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=self._log("beat"),
                stderr=subprocess.STDOUT,
            )
        )

    def start_web(self) -> None:
        self.others.append(
            subprocess.Popen(
                [sys.executable, "-m", "newsletter", "web", "--port", str(self.web_port)],
                cwd=ROOT,
                env=self.env,
                stdout=self._log("web"),
                stderr=subprocess.STDOUT,
            )
        )
        wait_for_port(self.web_port, timeout=60)

    def wait_workers_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        for index in range(len(self.workers)):
            log = self.var / f"worker{index}.log"
            while b"ready." not in log.read_bytes():
                process = self.workers[index]
                if process is None or process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {index} did not start:\n{self.tail(log)}")
                time.sleep(0.1)

    def down(self, *, keep: bool = False) -> None:
        for process in [*self.workers, *self.others]:
            if process is not None and process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    process.terminate()
        for process in [*self.workers, *self.others]:
            if process is None:
                continue
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for service in (self.smtp, self.redis):
            if service is not None and service.poll() is None:
                service.terminate()
                service.wait(timeout=20)
        self.stop_postgres("immediate")
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------

    def tail(self, path: Path, size: int = 3000) -> str:
        return path.read_bytes()[-size:].decode("utf-8", "replace")

    def _pg_options(self) -> str:
        # fsync off: the drills restart PostgreSQL cleanly (fast shutdown), never the machine.
        return (
            f"-p {self.pg_port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=100"
        )

    def _as_postgres(self, command: list[str], *, check: bool = True) -> None:
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(
            command,
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=self._log("pg-ctl"),
            cwd=self.dir,
        )

    def _log(self, name: str) -> IO[bytes]:
        return (self.var / f"{name}.log").open("ab")
