"""Benchmark of the signup endpoint under load, against a minimal endpoint that writes one row.

    python -m bench signup [--connections 16] [--seconds 20] [--rounds 1]

In one run, against one fresh PostgreSQL database: a real `newsletter web` (uvicorn, one
process) answering `POST /subscribe` (JSON) for a new address each request, and the same
uvicorn setup serving a minimal FastAPI app whose endpoint inserts one row through the
same engine — as a plain `def` route (FastAPI's thread pool), and as an `async def` route
making the same blocking call (the shape of `/subscribe`). Load from `wrk` (Debian
package wrk); prints requests/s, p50 and p99 latency and the ratios. The signup limits are
off (0) in the server's environment. Each signup queues a confirmation task on a Redis
queue of the run's own; no worker runs, and the queue is deleted after.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.send import _free_port, delete_queue
from newsletter.core import db

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# Redis db 15, as bench scale: the tests and other benchmarks use 10-14. Nothing is flushed.
REDIS_URL = os.environ.get("NEWSLETTER_BENCH_SIGNUP_REDIS_URL", "redis://127.0.0.1:6379/15")
# A new address for every request: a repeated one would measure the "already pending" path.
WRK_SCRIPT = """
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = args[1] .. "-" .. tid .. "-"
end
function request()
  counter = counter + 1
  local body = '{"email": "' .. prefix .. counter .. '@example.com", "name": "Leitor"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


@dataclass
class Result:
    what: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--seconds", type=int, default=20, help="each measurement")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before each")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the servers this often")
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("bench signup: wrk is missing (apt-get install -y wrk)")

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    token = uuid.uuid4().hex[:8]
    name = f"nl_signup_{token}"
    queue = f"nl-signup-{token}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    var = Path(tempfile.mkdtemp(prefix="bench-signup-"))
    env = {
        **os.environ,
        "NEWSLETTER_VAR_DIR": str(var),
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_BROKER_URL": REDIS_URL,
        "NEWSLETTER_QUEUE": queue,
        "NEWSLETTER_SIGNUP_LIMIT_PER_IP_PER_HOUR": "0",
        "NEWSLETTER_SIGNUP_LIMIT_PER_ADDRESS_PER_HOUR": "0",
        "PYTHONPATH": str(ROOT),
    }
    script = var / "signup.lua"
    script.write_text(WRK_SCRIPT)
    servers: list[subprocess.Popen[bytes]] = []
    results: list[Result] = []
    try:
        subprocess.run(
            [sys.executable, "-m", "newsletter", "init", "--no-seeds"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "CREATE TABLE bench_signups (id serial PRIMARY KEY, email text NOT NULL, "
                    "created_at timestamptz NOT NULL DEFAULT now())"
                )
            )
        engine.dispose()
        newsletter_port, minimal_port = _free_port(), _free_port()
        servers.append(
            _serve(
                [sys.executable, "-m", "newsletter", "web", "--port", str(newsletter_port)],
                env,
                var / "newsletter-web.log",
                newsletter_port,
            )
        )
        servers.append(
            _serve(
                [sys.executable, "-c", f"from bench.signup import serve; serve({minimal_port})"],
                env,
                var / "minimal-web.log",
                minimal_port,
            )
        )
        targets = [
            ("newsletter POST /subscribe", f"http://127.0.0.1:{newsletter_port}/subscribe"),
            ("minimal def, one INSERT", f"http://127.0.0.1:{minimal_port}/minimal"),
            (
                "minimal async def, one blocking INSERT",
                f"http://127.0.0.1:{minimal_port}/minimal-async",
            ),
        ]
        for round_ in range(args.rounds):
            for what, target in targets:
                tag = f"{token}{round_}{len(results)}"
                _wrk(wrk, args, script, target, f"w{tag}", seconds=args.warmup)
                results.append(
                    _wrk(wrk, args, script, target, tag, seconds=args.seconds, what=what)
                )
                print(_line(results[-1]), flush=True)
        with engine.connect() as connection:
            subscribers = connection.scalar(text("SELECT count(*) FROM subscribers"))
            rows = connection.scalar(text("SELECT count(*) FROM bench_signups"))
        engine.dispose()
        waiting = _queue_length(queue)
        print(
            f"\nwritten: {subscribers:,} subscribers, {rows:,} minimal rows; "
            f"{waiting:,} confirmation tasks waiting on the run's queue (no worker ran)"
        )
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
        delete_queue(REDIS_URL, queue)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(var, ignore_errors=True)
    _print_table(results, args)


def serve(port: int) -> None:
    """The minimal server: uvicorn started as `newsletter web` starts it, one process."""
    import logging

    import uvicorn

    from newsletter.core.config import get_settings
    from newsletter.core.logs import configure_logging

    configure_logging(get_settings(), level="WARNING")
    logging.getLogger().setLevel(logging.INFO)
    uvicorn.run(
        "bench.signup:minimal_app", factory=True, host="127.0.0.1", port=port, log_config=None
    )


def minimal_app() -> FastAPI:
    """One row written per request, through the service's own engine and session scope."""
    from newsletter.core.config import get_settings
    from newsletter.web.app import limit_threads

    app = FastAPI()
    # Its blocking work within the pool's connections, as create_app keeps the service's.
    size = get_settings().database_pool_size
    app.router.add_event_handler("startup", lambda: limit_threads(size))
    app.post("/minimal", status_code=202)(minimal)
    app.post("/minimal-async", status_code=202)(minimal_async)
    return app


def _session() -> Iterator[Session]:
    with db.session_scope() as session:
        yield session


MinimalSession = Annotated[Session, Depends(_session)]
INSERT = text("INSERT INTO bench_signups (email) VALUES (:email)")


def minimal(body: dict[str, Any], session: MinimalSession) -> JSONResponse:
    session.execute(INSERT, {"email": str(body.get("email", ""))})
    session.commit()
    return JSONResponse({"status": "accepted"}, status_code=202)


async def minimal_async(request: Request, session: MinimalSession) -> JSONResponse:
    # Blocking calls on the event loop, as POST /subscribe makes them.
    body = await request.json()
    session.execute(INSERT, {"email": str(body.get("email", ""))})
    session.commit()
    return JSONResponse({"status": "accepted"}, status_code=202)


def _serve(
    command: list[str], env: dict[str, str], log: Path, port: int
) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.2)
    server.kill()
    sys.exit(f"bench signup: {' '.join(command)} did not start; see {log}:\n{log.read_text()}")


def _wrk(
    wrk: str,
    args: argparse.Namespace,
    script: Path,
    target: str,
    *script_args: str,
    seconds: int,
    what: str = "",
) -> Result:
    """wrk's load on `target` for `seconds`, its Lua script given `script_args`."""
    output = subprocess.run(
        [
            wrk,
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            target,
            "--",
            *script_args,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = "; ".join(
        line.strip() for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line
    )
    return Result(
        what, rate, _percentile(output, "50%"), _percentile(output, "99%"), requests, errors
    )


def _percentile(output: str, which: str) -> float:
    match = re.search(rf"^\s+{which}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _line(result: Result) -> str:
    return (
        f"{result.what}: {result.requests_per_second:,.0f} requests/s, p50 "
        f"{result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms ({result.requests:,} requests"
        + (f"; {result.errors}" if result.errors else "")
        + ")"
    )


def _print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\nwrk: {args.threads} thread(s), {args.connections} connections, "
        f"{args.seconds} s each; one uvicorn process per server, same database"
    )
    print("| endpoint | requests/s | p50 ms | p99 ms | requests |")
    print("|---|---:|---:|---:|---:|")
    for result in results:
        print(
            f"| {result.what} | {result.requests_per_second:,.0f} | {result.p50_ms:.1f} "
            f"| {result.p99_ms:.1f} | {result.requests:,} |"
        )
    signup = [r for r in results if r.what.startswith("newsletter")]
    for name in ("minimal def", "minimal async def"):
        base = [r for r in results if r.what.startswith(name + ",")]
        if signup and base:
            ours = sum(r.requests_per_second for r in signup) / len(signup)
            theirs = sum(r.requests_per_second for r in base) / len(base)
            print(f"signup requests/s / {name}: {ours / theirs:.2f}")


def _queue_length(queue: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.llen(queue))
    finally:
        client.close()
