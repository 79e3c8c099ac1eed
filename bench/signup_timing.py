"""How long `POST /subscribe` takes for each kind of address: can its timing tell them apart?

    python -m bench signup-timing [--requests 200] [--database postgresql|sqlite]
                                  [--compare PATH_OF_ANOTHER_CHECKOUT]

A real `newsletter web` (uvicorn, one process) on a fresh database holding a subscribed
reader, a pending one and a suppressed address, its jobs going to a Redis queue of the
run's own (no worker runs; the queue is deleted after). One client on loopback asks
`--requests` times for each kind — new (a fresh address each time), pending, subscribed,
suppressed — the kinds interleaved in a shuffled order, after a warm-up; the signup
limits are off. Prints each kind's median and 10th/90th percentiles and the spread of the
medians. With `--compare`, the same against a server run from another checkout (say, the
tree before the signup went to the worker), on its own fresh database, in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.send import _free_port, delete_queue

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# Redis db 15, as the other benchmarks; only the run's own queue is touched.
REDIS_URL = os.environ.get("NEWSLETTER_BENCH_SIGNUP_REDIS_URL", "redis://127.0.0.1:6379/15")
KINDS = ("new", "pending", "subscribed", "suppressed")
SEED = """
from datetime import timedelta

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.subscribers import store, suppressions

settings = get_settings()
with db.session_scope() as session:
    for email, confirmed in (("subscribed@example.com", True), ("pending@example.com", False)):
        store.subscribe(
            session,
            store.SignupForm(email=email),
            source="bench",
            confirmed=confirmed,
            default_language="en",
            default_time_zone="Europe/Lisbon",
            confirmation_interval=timedelta(days=1),
        )
    suppressions.add(session, email="suppressed@example.com", reason="complaint")
"""


@dataclass
class Timings:
    tree: str
    by_kind: dict[str, list[float]]  # milliseconds

    def median(self, kind: str) -> float:
        return statistics.median(self.by_kind[kind])

    def percentile(self, kind: str, q: int) -> float:
        return statistics.quantiles(self.by_kind[kind], n=10)[q // 10 - 1]

    @property
    def spread(self) -> float:
        medians = [self.median(k) for k in KINDS]
        return max(medians) - min(medians)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per kind of address")
    parser.add_argument("--warmup", type=int, default=20, help="requests per kind, not timed")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--compare", type=Path, help="another checkout, measured the same way")
    args = parser.parse_args(argv)
    trees = [ROOT] + ([args.compare.resolve()] if args.compare else [])
    results = [_measure(tree, args) for tree in trees]
    print(
        f"\nPOST /subscribe (JSON), one client on loopback, {args.requests} requests per kind, "
        f"{args.database}, Redis broker, no worker"
    )
    print("| tree | kind | median ms | p10 ms | p90 ms |")
    print("|---|---|---:|---:|---:|")
    for timings in results:
        for kind in KINDS:
            print(
                f"| {timings.tree} | {kind} | {timings.median(kind):.2f} "
                f"| {timings.percentile(kind, 10):.2f} | {timings.percentile(kind, 90):.2f} |"
            )
    for timings in results:
        print(f"{timings.tree}: spread of the medians {timings.spread:.2f} ms")


def _measure(tree: Path, args: argparse.Namespace) -> Timings:
    token = uuid.uuid4().hex[:8]
    var = Path(tempfile.mkdtemp(prefix="bench-signup-timing-"))
    queue = f"nl-timing-{token}"
    with _database(args.database, var, token) as url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
            "NEWSLETTER_VAR_DIR": str(var),
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_BROKER_URL": REDIS_URL,
            "NEWSLETTER_QUEUE": queue,
            "NEWSLETTER_SIGNUP_LIMIT_PER_IP_PER_HOUR": "0",
            "NEWSLETTER_SIGNUP_LIMIT_PER_ADDRESS_PER_HOUR": "0",
            "PYTHONPATH": str(tree),
        }
        for command in (["-m", "newsletter", "init", "--no-seeds"], ["-c", SEED]):
            subprocess.run(
                [sys.executable, *command], cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL
            )
        port = _free_port()
        log = var / "web.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "web", "--port", str(port)],
            cwd=tree,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            return Timings(str(tree), _time_signups(f"http://127.0.0.1:{port}", args, log))
        finally:
            server.terminate()
            server.wait(timeout=30)
            delete_queue(REDIS_URL, queue)
            shutil.rmtree(var, ignore_errors=True)


def _time_signups(base: str, args: argparse.Namespace, log: Path) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with httpx.Client(base_url=base, timeout=10) as client:
        _wait_until_up(client, log)
        rounds = [(kind, n) for n in range(args.warmup + args.requests) for kind in KINDS]
        random.Random(7).shuffle(rounds)
        for kind, n in rounds:
            email = f"new-{uuid.uuid4().hex[:6]}@example.com" if kind == "new" else None
            body = {"email": email or f"{kind}@example.com"}
            start = time.perf_counter()
            response = client.post("/subscribe", json=body)
            elapsed = (time.perf_counter() - start) * 1000
            if response.status_code != 202:
                sys.exit(f"bench signup-timing: {kind} answered {response.status_code}")
            if n >= args.warmup:
                timings[kind].append(elapsed)
    return timings


def _wait_until_up(client: httpx.Client, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"bench signup-timing: the server did not start:\n{log.read_text()[-2000:]}")


@contextmanager
def _database(kind: str, var: Path, token: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{var / 'newsletter.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"nl_timing_{token}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
