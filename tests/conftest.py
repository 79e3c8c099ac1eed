"""Shared fixtures: real PostgreSQL, SQLite, Redis, an aiosmtpd server and a Celery worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

# The environment is set before the package is imported, so that every process of the
# run (this one and the workers it starts) reads the same settings.
ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(tempfile.mkdtemp(prefix="newsletter-tests-"))
REDIS_URL = os.environ.get("NEWSLETTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
# Every Redis key of this run (the broker's and the counters') starts with this: two runs
# on one Redis database never touch each other's keys, and each cleans up only its own.
REDIS_KEY_PREFIX = f"nl-test-{uuid.uuid4().hex[:8]}:"
POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_SERVICES = os.environ.get("NEWSLETTER_TEST_REQUIRE_SERVICES") == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SMTP_PORT = free_port()
TEST_ENV = {
    "NEWSLETTER_VAR_DIR": str(VAR_DIR),
    "NEWSLETTER_BROKER_URL": REDIS_URL,
    "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{SMTP_PORT}",
    "NEWSLETTER_SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex,
    "NEWSLETTER_ADMIN_TOKEN": "test-admin-token-" + uuid.uuid4().hex,
    "NEWSLETTER_BASE_URL": "http://newsletter.test",
    "NEWSLETTER_FROM_ADDRESS": "news@plataforma.test",
    # The base URL's host, TestClient's "testserver", and loopback (where system tests run
    # the service): the Host check stays on, as in production, for every other name.
    "NEWSLETTER_ALLOWED_HOSTS": "newsletter.test,testserver,localhost,127.0.0.1,::1",
    # The feedback loops whose mailed complaints the sample ARF reports come from.
    "NEWSLETTER_FEEDBACK_LOOP_SOURCES": '["arf.mail.yahoo.com", "hotmail.com"]',
    # Temporary failures come back within a second or two, not half a minute.
    "NEWSLETTER_RETRY_BASE_SECONDS": "0.5",
    "NEWSLETTER_RETRY_MAX_SECONDS": "2",
    "NEWSLETTER_BATCH_SIZE": "50",
    # A queue of this run's own, under keys of its own (the prefix above).
    "NEWSLETTER_QUEUE": f"newsletter-test-{uuid.uuid4().hex[:8]}",
    "NEWSLETTER_REDIS_KEY_PREFIX": REDIS_KEY_PREFIX,
    # Every test signs up from the same client address: the limits are counted (the code
    # runs) but far out of reach; tests/test_security.py sets its own low ones.
    "NEWSLETTER_SIGNUP_LIMIT_PER_IP_PER_HOUR": "1000000",
    "NEWSLETTER_SIGNUP_LIMIT_PER_ADDRESS_PER_HOUR": "1000000",
    "NEWSLETTER_CONFIRMATIONS_PER_MAILBOX_PER_DAY": "1000000",
}
os.environ.update(TEST_ENV)

from newsletter.articles.store import forget_public_topics  # noqa: E402
from newsletter.core import db  # noqa: E402
from newsletter.core.config import get_settings  # noqa: E402
from newsletter.core.models import Base  # noqa: E402
from newsletter.core.schema import upgrade  # noqa: E402
from newsletter.subscribers import newsletters  # noqa: E402

# Stand-ins for the providers that post webhooks, for the unit and integration tests alike.
pytest_plugins = ("tests.providers",)


def service_missing(what: str) -> None:
    """A missing service fails the run in CI and skips the test on a laptop without it."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (NEWSLETTER_TEST_REQUIRE_SERVICES=1) but does not answer")
    pytest.skip(f"{what} does not answer")


# --- databases -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        service_missing("PostgreSQL")
    finally:
        engine.dispose()
    return POSTGRES_ADMIN_URL


def create_postgres_database(admin_url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"nl_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database of each kind, made the process's configured database."""
    if request.param == "sqlite":
        url = f"sqlite:///{VAR_DIR / f'test-{uuid.uuid4().hex[:8]}.db'}"
        admin = None
    else:
        admin = request.getfixturevalue("postgres_server")
        url = create_postgres_database(admin)
    previous = os.environ.get("NEWSLETTER_DATABASE_URL")
    os.environ["NEWSLETTER_DATABASE_URL"] = url
    get_settings.cache_clear()
    db.reset()
    upgrade(db.get_engine())
    yield url
    db.reset()
    if admin:
        drop_postgres_database(admin, url)
    if previous is None:
        os.environ.pop("NEWSLETTER_DATABASE_URL", None)
    else:
        os.environ["NEWSLETTER_DATABASE_URL"] = previous
    get_settings.cache_clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh database of each kind with the newest schema, for tests that hold their own
    engine and sessions (rather than the process's configured database)."""
    from sqlalchemy import create_engine, event

    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        # As in production (newsletter.db): SQLite leaves foreign keys unchecked otherwise.
        event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA foreign_keys=ON"))
        admin = url = None
    else:
        admin = request.getfixturevalue("postgres_server")
        url = create_postgres_database(admin)
        engine = create_engine(url)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        if admin and url:
            drop_postgres_database(admin, url)


@pytest.fixture
def clean_db(database_url: str) -> str:
    """Empty every table and recreate the `daily` newsletter, for a test of its own."""
    settle_jobs()
    engine = db.get_engine()
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            # The module's worker stays registered: it is the test's machinery, not its data.
            if table.name != "workers":
                connection.execute(table.delete())
    forget_public_topics()  # the topics a page offered before were of the rows just deleted
    newsletters.forget_known_slugs()  # and the newsletters it found, deleted as no editor can
    settings = get_settings()
    with db.session_scope() as session:
        newsletters.ensure_default_newsletter(
            session, language=settings.default_language, time_zone=settings.default_time_zone
        )
    return database_url


# --- SMTP ----------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Mailbox:
    """What the test SMTP server received, with a way to wait for more.

    Tests script its answers: `rcpt_replies[address]` is a list of replies the server
    gives that recipient, one per attempt, before it accepts; `delay` slows each message.
    """

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.rcpt_replies: dict[str, list[str]] = {}
        self.delay = 0.0
        self._changed = threading.Condition()

    async def handle_RCPT(
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        replies = self.rcpt_replies.get(address.lower())
        if replies:
            return replies.pop(0)
        envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._changed:
            self.messages.append(
                Received(
                    envelope.mail_from,  # type: ignore[attr-defined]
                    list(envelope.rcpt_tos),  # type: ignore[attr-defined]
                    envelope.original_content,  # type: ignore[attr-defined]
                )
            )
            self._changed.notify_all()
        return "250 OK"

    def clear(self) -> None:
        with self._changed:
            self.messages.clear()
            self.rcpt_replies.clear()
            self.delay = 0.0

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not reached within {timeout}s")
                self._changed.wait(min(left, 0.5))

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]

    def wait_for(self, address: str, count: int = 1, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.to(address)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} message(s) to {address} within {timeout}s, "
                        f"got {len(self.to(address))}"
                    )
                self._changed.wait(left)
            return self.to(address)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=SMTP_PORT, enable_SMTPUTF8=True)
    controller.start()
    yield mailbox
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: Mailbox) -> Mailbox:
    smtp_server.clear()
    return smtp_server


# --- Redis and the worker ------------------------------------------------------------


def forget_redis_keys() -> None:
    """Delete this run's keys (and only them: other runs share the database)."""
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(f"{REDIS_KEY_PREFIX}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])


# The workers this process started and has not stopped yet (the `worker` fixture).
_running_workers: list[subprocess.Popen[bytes]] = []


def settle_jobs() -> None:
    """No job an earlier test queued may land in the next test's emptied database.

    With a worker of this process running, wait until it has run them all; with none,
    drop them (with their Redis counters): nobody was going to run them for that test.
    """
    import redis

    if any(process.poll() is None for process in _running_workers):
        wait_until_tasks_done(poll_seconds=0.03)
        return
    # No Redis here: no job was queued there either.
    with contextlib.suppress(redis.RedisError):
        forget_redis_keys()


@pytest.fixture(scope="session")
def redis_broker() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        service_missing("Redis")
    finally:
        client.close()
    # The jobs this process sends (tests that queue a task themselves) go to this broker:
    # importing the package configures nothing, the process that sends does.
    from newsletter.app.queue import configure

    configure(get_settings())
    yield REDIS_URL
    forget_redis_keys()


@pytest.fixture(scope="module")
def worker(
    database_url: str, redis_broker: str, smtp_server: Mailbox
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on Redis, using the module's database."""
    # Tasks queued by earlier modules name rows of another database: drop them.
    forget_redis_keys()
    log = VAR_DIR / f"worker-{uuid.uuid4().hex[:6]}.log"
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": database_url}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "worker",
                "--loglevel=INFO",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"test-{uuid.uuid4().hex[:6]}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while b"ready." not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    _running_workers.append(process)
    yield process
    _running_workers.remove(process)
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_until_tasks_done(timeout: float = 60.0, *, poll_seconds: float = 0.1) -> None:
    """Until every task of this run's queue has run: none waiting, none taken and not yet
    acknowledged (a task is acknowledged once it has run; a retry is queued before that).

    For tests that check that nothing more happens, instead of sleeping a while.
    """
    from newsletter.ops.monitoring import queue_depths

    broker_url = get_settings().broker_url
    deadline = time.monotonic() + timeout
    # Idle three times in a row: a worker holds a message for an instant between taking
    # it from the queue and recording it as unacknowledged.
    idle = 0
    while idle < 3:
        [depth] = queue_depths(broker_url)
        if depth["ready"] is None or depth["unacked"] is None:
            raise AssertionError(f"the queue cannot be read: {depth}")
        idle = idle + 1 if depth["ready"] == depth["unacked"] == 0 else 0
        if time.monotonic() > deadline:
            raise AssertionError(f"tasks still queued or running after {timeout}s: {depth}")
        time.sleep(poll_seconds)


@pytest.fixture
def api(clean_db: str) -> Iterator[TestClient]:
    """The HTTP API as an editor's script calls it: the admin token as a Bearer."""
    from newsletter.web.app import create_app

    with TestClient(create_app()) as test_client:
        test_client.headers["Authorization"] = f"Bearer {get_settings().admin_token}"
        yield test_client
