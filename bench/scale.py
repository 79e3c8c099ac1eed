"""Benchmark of one digest to a large list: load, dispatch and send, and the memory each takes.

    python -m bench scale [--subscribers 1000000] [--compare 100000] [--connections 4]
                          [--workers 1] [--dispatch-only]

For each list size (the --compare size first, then --subscribers), in a PostgreSQL database
of its own: N confirmed subscribers loaded with COPY; one 10-article digest dispatched by
the real dispatcher (`newsletter.dispatch_digest`, run in a process of its own so that its
memory is its own) and sent by real Celery worker processes to Postfix's smtp-sink, over a
Redis queue of its own. Prints wall times, messages/s, the peak memory (VmHWM) of the
dispatcher and of every worker process, the database's size before and after, and the
ratio of the dispatcher's peak at the two sizes: it should stay near 1. The raw SMTP limit
of `bench send`, pushed from processes, is measured first and again after each size, in
the same run; each size's ratio is to the mean of the limits around its send. When the
server runs without autovacuum (as the development machine's does), the deliveries are
analyzed every 30 s in its stead (see _Analyzer). Needs smtp-sink (Debian package
postfix), PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.seed import seed_newsletter
from bench.send import _free_port, _wait_for_port, delete_queue, raw_limit_processes

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# Redis db 15 by default: the tests and other benchmarks use 10-14. Nothing is flushed;
# each run takes a queue of its own and deletes only that queue's keys.
REDIS_URL = os.environ.get("NEWSLETTER_BENCH_SCALE_REDIS_URL", "redis://127.0.0.1:6379/15")
COPY_ROWS = 50_000


@dataclass
class Run:
    """What one list size measured."""

    subscribers: int
    load_seconds: float = 0.0
    dispatch_seconds: float = 0.0
    send_seconds: float = 0.0
    batches: int = 0
    sent: int = 0
    state: str = ""
    dispatcher_start_kb: int = 0
    dispatcher_peak_kb: int = 0
    worker_peaks_kb: dict[str, int] = field(default_factory=dict)
    size_empty: int = 0
    size_loaded: int = 0
    size_after: int = 0
    analyzes: int = 0  # ANALYZE runs standing in for autovacuum, when the server has it off


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument(
        "--compare", type=int, default=100_000, help="a smaller list run first (0: none)"
    )
    parser.add_argument("--connections", type=int, default=4, help="worker processes in all")
    parser.add_argument("--workers", type=int, default=1, help="Celery workers")
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument(
        "--dispatch-only",
        action="store_true",
        help="no workers: load and dispatch only (the queued tasks are deleted after)",
    )
    args = parser.parse_args(argv)
    sizes = [n for n in (args.compare, args.subscribers) if n]
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink).exists():
        sys.exit("bench scale: smtp-sink is missing (apt-get install postfix)")
    port = _free_port()
    sink_process = subprocess.Popen(
        [sink, "-u", "nobody", f"127.0.0.1:{port}", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs: list[Run] = []
    try:
        _wait_for_port(port)
        # From processes, as bench send's ratio base (threads share one interpreter lock).
        raw = raw_limit_processes(port, connections=args.connections, seconds=args.raw_seconds)
        print(
            f"raw limit: smtplib, {args.connections} connection(s), 25 KB messages: "
            f"{raw:,.0f} messages/s from {args.connections} processes",
            flush=True,
        )
        # Measured again after each size: a ratio's base is the mean of the limits
        # measured just before and just after its send (this shared machine drifts).
        raws = [raw]
        for count in sizes:
            runs.append(one_size(args, port, count))
            raws.append(
                raw_limit_processes(port, connections=args.connections, seconds=args.raw_seconds)
            )
            print(f"raw limit again: {raws[-1]:,.0f} messages/s", flush=True)
            _print_run(runs[-1], (raws[-2] + raws[-1]) / 2)
    finally:
        sink_process.terminate()
        sink_process.wait()
    _print_table(runs, raws)


def one_size(args: argparse.Namespace, port: int, count: int) -> Run:
    """Load, dispatch and send one digest to `count` subscribers in a fresh database."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    run = Run(count)
    token = uuid.uuid4().hex[:8]
    name = f"nl_scale_{token}"
    queue = f"nl-scale-{token}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    var = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    env = {
        **os.environ,
        "NEWSLETTER_VAR_DIR": str(var),
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_BROKER_URL": REDIS_URL,
        "NEWSLETTER_QUEUE": queue,
        "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "NEWSLETTER_FROM_ADDRESS": "news@plataforma.test",
        "NEWSLETTER_BASE_URL": "https://news.plataforma.test",
        "PYTHONPATH": str(ROOT),
    }
    engine = create_engine(url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        newsletter_id = _prepare(engine)
        run.size_empty = _database_size(engine)
        started = time.monotonic()
        _copy_subscribers(url, count, newsletter_id)
        run.load_seconds = time.monotonic() - started
        run.size_loaded = _database_size(engine)
        print(f"{count:,} subscribers loaded with COPY in {run.load_seconds:.1f} s", flush=True)

        if not args.dispatch_only:
            workers = _start_workers(args, env, var)
            time.sleep(4)  # the workers connect to Redis
        digest_id = _start_digest(engine)
        sampler = _Sampler(workers)
        sampler.start()
        analyzer = _Analyzer(engine)
        analyzer.start()
        started = time.monotonic()
        dispatcher = subprocess.run(
            [sys.executable, "-c", f"from bench.scale import dispatcher; dispatcher({digest_id})"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        run.dispatch_seconds = time.monotonic() - started
        if dispatcher.returncode != 0:
            raise SystemExit(f"bench scale: the dispatcher failed:\n{dispatcher.stderr}")
        report = json.loads(dispatcher.stdout.strip().splitlines()[-1])
        run.batches = report["batches"]
        run.dispatcher_start_kb = report["start_kb"]
        run.dispatcher_peak_kb = report["peak_kb"]
        if args.dispatch_only:
            run.state = "dispatched"
        else:
            run.state = _wait_for_digest(engine, digest_id)
            run.send_seconds = time.monotonic() - started
        run.worker_peaks_kb = sampler.stop()
        run.analyzes = analyzer.stop()
        with engine.connect() as connection:
            run.sent = int(
                connection.scalar(
                    text(
                        "SELECT count(*) FROM deliveries WHERE digest_id = :d AND status = 'sent'"
                    ),
                    {"d": digest_id},
                )
                or 0
            )
        run.size_after = _database_size(engine)
        return run
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        engine.dispose()
        delete_queue(REDIS_URL, queue)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(var, ignore_errors=True)


def dispatcher(digest_id: int) -> None:
    """The dispatcher's process: the dispatch_digest task run here, its memory reported."""
    from newsletter.app.queue import configure
    from newsletter.core.config import get_settings
    from newsletter.tasks import jobs as tasks

    configure(get_settings())  # the batches are queued from this process
    start_kb = _proc_status_kb(os.getpid(), "VmRSS")
    batches = tasks.dispatch_digest(digest_id)
    report = {
        "batches": batches,
        "start_kb": start_kb,
        "peak_kb": _proc_status_kb(os.getpid(), "VmHWM"),
    }
    print(json.dumps(report), flush=True)


def _prepare(engine: object) -> int:
    """The newest schema, the `daily` newsletter and ten fresh articles; its id."""
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from newsletter.core.schema import upgrade

    assert isinstance(engine, Engine)
    upgrade(engine)
    with Session(engine) as session:
        newsletter_id = seed_newsletter(session).id
        session.commit()
    return newsletter_id


def _copy_subscribers(url: str, count: int, newsletter_id: int) -> None:
    """N active subscribers, each subscribed to the newsletter, written with COPY."""
    import psycopg

    from newsletter.core.validation import email_hash

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    now = datetime.now(UTC).isoformat()
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        with cursor.copy(
            "COPY subscribers (id, email, email_key, email_hash, name, language, topics, "
            "status, soft_bounce_count, time_zone, created_at, updated_at) FROM STDIN"
        ) as copy:
            for start in range(1, count + 1, COPY_ROWS):
                buffer = io.StringIO()
                for n in range(start, min(count + 1, start + COPY_ROWS)):
                    address = f"reader{n}@example.com"
                    buffer.write(
                        f"{n}\t{address}\t{address}\t{email_hash(address)}\tLeitor {n}\ten\t"
                        f"[]\tactive\t0\tEurope/Lisbon\t{now}\t{now}\n"
                    )
                copy.write(buffer.getvalue())
        with cursor.copy(
            "COPY subscriptions (id, subscriber_id, newsletter_id, status, created_at, "
            "confirmed_at, consent_source) FROM STDIN"
        ) as copy:
            for start in range(1, count + 1, COPY_ROWS):
                buffer = io.StringIO()
                for n in range(start, min(count + 1, start + COPY_ROWS)):
                    buffer.write(f"{n}\t{n}\t{newsletter_id}\tsubscribed\t{now}\t{now}\tbench\n")
                copy.write(buffer.getvalue())
        # Ids were given explicitly: the sequences must know, for any row added later.
        for table in ("subscribers", "subscriptions"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        connection.commit()
        connection.autocommit = True
        cursor.execute("ANALYZE subscribers")
        cursor.execute("ANALYZE subscriptions")


def _start_workers(
    args: argparse.Namespace, env: dict[str, str], var: Path
) -> list[subprocess.Popen[bytes]]:
    workers = []
    concurrency = args.connections // args.workers or 1
    for n in range(args.workers):
        log = (var / f"worker{n}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker",
                    "worker",
                    "--loglevel=WARNING",
                    f"--concurrency={concurrency}",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-n",
                    f"scale{n}-{uuid.uuid4().hex[:6]}@%h",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return workers


def _start_digest(engine: object) -> int:
    """A digest created and started as the editor's trigger and the beat tick would."""
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from newsletter.digests import lifecycle

    assert isinstance(engine, Engine)
    with Session(engine) as session:
        digest_id = lifecycle.create_digest(session, newsletter_slug="daily").id
        session.commit()
        lifecycle.start_due(session)
        session.commit()
    return digest_id


def _wait_for_digest(engine: object, digest_id: int) -> str:
    from sqlalchemy import Engine, text

    assert isinstance(engine, Engine)
    while True:
        # The digest's state only: counting a million deliveries every poll would load
        # the database that is being measured.
        with engine.connect() as connection:
            state = str(
                connection.scalar(text("SELECT state FROM digests WHERE id = :d"), {"d": digest_id})
            )
        if state != "sending":
            return state
        time.sleep(1.0)


def _database_size(engine: object) -> int:
    from sqlalchemy import Engine, text

    assert isinstance(engine, Engine)
    with engine.connect() as connection:
        return int(connection.scalar(text("SELECT pg_database_size(current_database())")) or 0)


class _Analyzer:
    """ANALYZE of the deliveries every 30 s, when the server's autovacuum is off.

    The deliveries table grows by one row per reader during the send; with no statistics
    the planner reads the history of each page of readers through the digest's own
    (digest_id, status) index, whose size grows with the send: each page then costs more
    than the last. Production servers run autovacuum, which analyzes the table as it grows.
    """

    def __init__(self, engine: object) -> None:
        from sqlalchemy import Engine, text

        assert isinstance(engine, Engine)
        self._engine = engine
        with engine.connect() as connection:
            self._needed = connection.scalar(text("SHOW autovacuum")) == "off"
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._analyze, daemon=True)

    def start(self) -> None:
        if self._needed:
            print("  autovacuum is off on this server: ANALYZE deliveries every 30 s", flush=True)
            self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.count

    def _analyze(self) -> None:
        from sqlalchemy import text

        while not self._stop.wait(30.0):
            with self._engine.connect() as connection:
                connection.execute(text("ANALYZE deliveries"))
                connection.commit()
            self.count += 1


class _Sampler:
    """Worker processes (each Celery parent and its pool) watched until stopped.

    VmHWM is the kernel's own high-water mark of each process, so nothing between two
    polls is missed; polling is only needed to find the pool processes and read them
    before they exit.
    """

    def __init__(self, workers: list[subprocess.Popen[bytes]]) -> None:
        self._roots = [worker.pid for worker in workers]
        self._peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        self._read()
        return dict(self._peaks)

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self._read()

    def _read(self) -> None:
        for n, root in enumerate(self._roots):
            for label, pid in [(f"worker{n}", root)] + [
                (f"worker{n}.pool{k}", child) for k, child in enumerate(_children(root))
            ]:
                peak = _proc_status_kb(pid, "VmHWM")
                self._peaks[label] = max(self._peaks.get(label, 0), peak)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return sorted(int(child) for child in text.split())


def _proc_status_kb(pid: int, key: str) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def _print_run(run: Run, raw: float) -> None:
    rate = run.sent / run.send_seconds if run.send_seconds else 0.0
    print(
        f"{run.subscribers:,} subscribers: load {run.load_seconds:.1f} s, dispatch "
        f"{run.dispatch_seconds:.1f} s ({run.batches} batches), "
        + (
            f"sent {run.sent:,} in {run.send_seconds:.1f} s, {rate:,.0f} messages/s "
            f"({rate / raw:.2f} of the raw limit), digest {run.state}; "
            if run.send_seconds
            else "no send (--dispatch-only); "
        )
        + f"dispatcher {run.dispatcher_start_kb / 1024:.0f} MB at start, peak "
        f"{run.dispatcher_peak_kb / 1024:.0f} MB"
        + (f"; {run.analyzes} ANALYZE(s) of the deliveries" if run.analyzes else ""),
        flush=True,
    )
    if run.worker_peaks_kb:
        peaks = ", ".join(f"{k} {v / 1024:.0f} MB" for k, v in sorted(run.worker_peaks_kb.items()))
        print(f"  worker peaks (VmHWM): {peaks}", flush=True)
    print(
        f"  database size: {run.size_empty / 1e6:.0f} MB empty, {run.size_loaded / 1e6:.0f} MB "
        f"loaded, {run.size_after / 1e6:.0f} MB after the send",
        flush=True,
    )


def _print_table(runs: list[Run], raws: list[float]) -> None:
    print()
    print(
        "| subscribers | load s | dispatch s | send s | messages/s | dispatcher peak MB "
        "| worker peak MB (max) | DB MB empty / loaded / after |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for run in runs:
        rate = run.sent / run.send_seconds if run.send_seconds else 0.0
        worker_peak = max(run.worker_peaks_kb.values(), default=0) / 1024
        print(
            f"| {run.subscribers:,} | {run.load_seconds:.1f} | {run.dispatch_seconds:.1f} "
            f"| {run.send_seconds:.1f} | {rate:,.0f} | {run.dispatcher_peak_kb / 1024:.0f} "
            f"| {worker_peak:.0f} | {run.size_empty / 1e6:.0f} / {run.size_loaded / 1e6:.0f} "
            f"/ {run.size_after / 1e6:.0f} |"
        )
    if len(runs) == 2 and runs[0].dispatcher_peak_kb:
        small, large = runs
        print(
            f"\ndispatcher peak memory, {large.subscribers:,} vs {small.subscribers:,} "
            f"subscribers: {large.dispatcher_peak_kb / small.dispatcher_peak_kb:.2f}x "
            f"({small.dispatcher_peak_kb / 1024:.1f} MB -> {large.dispatcher_peak_kb / 1024:.1f} "
            f"MB; the list is {large.subscribers / small.subscribers:.0f}x longer)"
        )
    print(
        "raw limit in this run, before the first size and after each: "
        + ", ".join(f"{raw:,.0f}" for raw in raws)
        + " messages/s"
    )
