"""Issue 7's fault drills, short: a few hundred readers each through a private stack.

Each drill runs as `python -m drills NAME --subscribers N --json` in its own process, on
its own PostgreSQL cluster, Redis and SMTP server (never the machine's shared ones), and
must end with nobody lost, nobody wrongly mailed, and at most one duplicate per worker
killed. The sweeper's part is tested here directly, too.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Delivery, DeliveryStatus, Digest, DigestState
from newsletter.digests import lifecycle
from newsletter.sending import sweeper
from newsletter.tasks import jobs as tasks
from tests.conftest import ROOT
from tests.factories import add_reader

# The short drills run by default; the rest with NEWSLETTER_TEST_ALL_DRILLS=1 (each takes
# 20 to 60 s here). `python -m drills NAME` runs any of them at full size.
SHORT = [
    ("kill-worker", 200),
    ("kill-machine", 400),
    ("two-machines", 400),
    ("restart-redis", 300),
    ("smtp-flaky", 300),
    ("unsubscribe", 300),
]
MORE = [("restart-postgres", 300), ("smtp-550", 300), ("smtp-hang", 300)]
DRILLS = SHORT + (MORE if os.environ.get("NEWSLETTER_TEST_ALL_DRILLS") == "1" else [])


def can_run_drills() -> str | None:
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") or not shutil.which("redis-server"):
        return "the drills need PostgreSQL's initdb and redis-server"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "as root, the drills need runuser to start PostgreSQL as postgres"
    return None


@pytest.mark.parametrize(("name", "subscribers"), DRILLS)
def test_drill(name: str, subscribers: int) -> None:
    missing = can_run_drills()
    if missing:
        pytest.skip(missing)
    env = {
        **os.environ,
        # The sweeper's shortest wait, and faults that fit a send of a few seconds.
        "NEWSLETTER_STALE_AFTER_SECONDS": "10",
        "DRILLS_KILL_EVERY": "4",
        "DRILLS_HANG_SECONDS": "8",
        # Batches small enough for two machines to share, and a lost one noticed in seconds.
        **(
            {
                "NEWSLETTER_WORKER_HEARTBEAT_SECONDS": "1",
                "NEWSLETTER_WORKER_LOST_SECONDS": "5",
                "NEWSLETTER_BATCH_SIZE": "25",
            }
            if name in {"kill-machine", "two-machines"}
            else {}
        ),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "drills",
            name,
            "--subscribers",
            str(subscribers),
            "--smtp-delay",
            "0.01",
            "--timeout",
            "150",
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=240,
    )
    lines = done.stdout.decode().strip().splitlines()
    assert lines, done.stderr.decode()[-3000:]
    result = json.loads(lines[-1])
    assert result["state"] == "sent", result
    assert result["lost"] == 0, result
    assert result["wrongly_mailed"] == 0, result
    # The target: a restart of Redis or PostgreSQL duplicates nothing; only a
    # worker killed between the relay's "250" and the mark may send its claim group's
    # messages twice.
    assert result["duplicated"] <= result["kills"] * result["claim_group"], result
    assert result["delivered"] > 0 and result["ok"], result
    if name == "kill-machine":
        # Recovered by the heartbeats (lost after 5 s), not by the broker's hour.
        assert result["recovery_seconds"] < 60, result
    if name in {"kill-machine", "two-machines"}:
        assert len(result["by_worker"]) >= 2, result  # both machines sent


# --- the sweeper, without a worker -------------------------------------------------------


def sending_digest() -> int:
    with db.session_scope() as session:
        digest_id = lifecycle.create_digest(session, newsletter_slug="daily").id
    with db.session_scope() as session:
        lifecycle.start_due(session)
    return digest_id


def test_a_claim_whose_task_is_gone_is_queued_again(clean_db: str) -> None:
    """Claimed by a worker that died before marking it: given back, then queued again."""
    reader = add_reader("claimed@example.com")
    digest_id = sending_digest()
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    with db.session_scope() as session:
        delivery = Delivery(
            digest_id=digest_id,
            subscriber_id=reader,
            status=DeliveryStatus.SENDING,
            claimed_by="a-task-that-died",
            claimed_at=long_ago,
            attempts=1,
            created_at=long_ago,
            updated_at=long_ago,
        )
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    with db.session_scope() as session:
        batches = sweeper.stale_batches(
            session, stale_after=timedelta(minutes=5), size=50, lost_after=timedelta(seconds=45)
        )
    assert batches == [(digest_id, [delivery_id])]
    with db.session_scope() as session:
        found = session.get(Delivery, delivery_id)
        assert found is not None
        assert (found.status, found.claimed_by) == (DeliveryStatus.QUEUED, None)
        # Queued again just now: the next sweep leaves it to the task it was given.
        assert (
            sweeper.stale_batches(
                session, stale_after=timedelta(minutes=5), size=50, lost_after=timedelta(seconds=45)
            )
            == []
        )


def test_a_digest_whose_last_batch_died_before_finishing_it_is_marked_sent(
    clean_db: str,
) -> None:
    """Every delivery final, but the worker died before finishing the digest: the tick does."""
    reader = add_reader("last@example.com")
    digest_id = sending_digest()
    with db.session_scope() as session:
        digest = session.get(Digest, digest_id)
        assert digest is not None
        digest.dispatched_at = datetime.now(UTC)
        session.add(Delivery(digest_id=digest_id, subscriber_id=reader, status=DeliveryStatus.SENT))
    tasks._sweep(get_settings())
    with db.session_scope() as session:
        state = session.scalar(select(Digest.state).where(Digest.id == digest_id))
    assert state == DigestState.SENT


def test_a_failed_claim_skips_only_a_reader_who_may_not_be_mailed(clean_db: str) -> None:
    """smtp-flaky drill: a batch queued twice lost a reader. Its claim failed while the
    other task held the delivery; that task gave it back (451), and the failed claim's
    'skip if still queued' then skipped an eligible reader for good."""
    from newsletter.sending.ledger import Ledger
    from newsletter.subscribers import store as subscribers

    staying = add_reader("staying@example.com")
    leaving = add_reader("leaving@example.com")
    digest_id = sending_digest()
    with db.session_scope() as session:
        rows = [
            Delivery(digest_id=digest_id, subscriber_id=reader, status=DeliveryStatus.QUEUED)
            for reader in (staying, leaving)
        ]
        session.add_all(rows)
        session.flush()
        ids = {reader: row.id for reader, row in zip((staying, leaving), rows, strict=True)}
        newsletter_id = session.get_one(Digest, digest_id).newsletter_id
        subscribers.unsubscribe(session, subscriber_id=leaving, source="test")
    ledger = Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="a-second-task")
    try:
        for delivery_id in ids.values():
            ledger.skip_if_ineligible(delivery_id)
    finally:
        ledger.close()
    with db.session_scope() as session:
        status = {
            reader: session.get_one(Delivery, delivery_id).status
            for reader, delivery_id in ids.items()
        }
    assert status == {staying: DeliveryStatus.QUEUED, leaving: DeliveryStatus.SKIPPED}


def queued_deliveries(digest_id: int, readers: list[int]) -> tuple[list[int], int]:
    """A queued delivery of the digest to each reader; their ids and the newsletter's."""
    with db.session_scope() as session:
        rows = [
            Delivery(digest_id=digest_id, subscriber_id=reader, status=DeliveryStatus.QUEUED)
            for reader in readers
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows], session.get_one(Digest, digest_id).newsletter_id


def test_a_mark_lost_with_the_database_connection_is_written_again(clean_db: str) -> None:
    """restart-postgres drill: two readers were mailed twice. The mark of a message the
    relay had accepted travels with the next claim; PostgreSQL went away with it, the
    delivery kept its claim, and was sent again. The ledger now reconnects and writes it."""
    from newsletter.sending.ledger import Ledger

    if not clean_db.startswith("postgresql"):
        pytest.skip("ends a PostgreSQL server connection")
    readers = [add_reader("first@example.com"), add_reader("second@example.com")]
    (first, second), newsletter_id = queued_deliveries(sending_digest(), readers)
    engine = db.get_engine()
    ledger = Ledger(engine, newsletter_id=newsletter_id, claimant="the-task")
    try:
        assert ledger.claim([first])
        ledger.sent(first, "<first@plataforma.test>")
        pid = ledger.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with engine.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        assert ledger.claim([second])  # carries the mark of the first; the connection is dead
        ledger.sent(second, "<second@plataforma.test>")
    finally:
        ledger.close()
    with db.session_scope() as session:
        found = {
            d.id: (d.status, d.message_id)
            for d in session.scalars(select(Delivery).where(Delivery.id.in_([first, second])))
        }
    assert found == {
        first: (DeliveryStatus.SENT, "<first@plataforma.test>"),
        second: (DeliveryStatus.SENT, "<second@plataforma.test>"),
    }


def test_a_claim_group_carries_the_marks_of_the_last_and_gives_back_what_did_not_go(
    clean_db: str,
) -> None:
    """Deliveries are claimed a group at a time; the marks of the messages just sent travel
    with the next group's claim (one statement on PostgreSQL), and a group cut short gives
    back what it did not send, the attempt not counted, still held by its batch."""
    from sqlalchemy import event

    from newsletter.sending.ledger import Ledger

    readers = [add_reader(f"group{n}@example.com") for n in range(4)]
    (a, b, c, d), newsletter_id = queued_deliveries(sending_digest(), readers)
    engine = db.get_engine()
    ledger = Ledger(engine, newsletter_id=newsletter_id, claimant="the-task")
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert ledger.claim([a, b]) == {a, b}
        ledger.sent(a, "<a@plataforma.test>")
        ledger.sent(b, "<b@plataforma.test>")
        assert status_of([a, b]) == {a: DeliveryStatus.SENDING, b: DeliveryStatus.SENDING}
        statements.clear()
        assert ledger.claim([c, d]) == {c, d}
        if clean_db.startswith("postgresql"):
            assert len(statements) == 1, statements  # the marks and the claim together
            # Planned for its own values, never by a generic plan made while the table
            # was small (core.db).
            show = ledger.connection.exec_driver_sql("SHOW plan_cache_mode").scalar()
            assert show == "force_custom_plan"
        assert status_of([a, b]) == {a: DeliveryStatus.SENT, b: DeliveryStatus.SENT}
        ledger.sent(c, "<c@plataforma.test>")
        ledger.unclaim([d])  # the batch stopped before d went
    finally:
        event.remove(engine, "before_cursor_execute", record)
        ledger.close()
    with db.session_scope() as session:
        found = {
            row.id: (row.status, row.message_id, row.attempts, row.claimed_by)
            for row in session.scalars(select(Delivery).where(Delivery.id.in_([a, b, c, d])))
        }
    assert found == {
        a: (DeliveryStatus.SENT, "<a@plataforma.test>", 1, "the-task"),
        b: (DeliveryStatus.SENT, "<b@plataforma.test>", 1, "the-task"),
        c: (DeliveryStatus.SENT, "<c@plataforma.test>", 1, "the-task"),
        d: (DeliveryStatus.QUEUED, None, 0, "the-task"),
    }


def status_of(delivery_ids: list[int]) -> dict[int, str]:
    with db.session_scope() as session:
        return dict(
            session.execute(
                select(Delivery.id, Delivery.status).where(Delivery.id.in_(delivery_ids))
            ).all()
        )


def test_a_claim_racing_an_unsubscribe_waits_and_then_sees_it(clean_db: str) -> None:
    """unsubscribe drill: a claim checked the subscription just before an unsubscribe
    committed, and the message went out after the reader's 200. The claim now waits for an
    unsubscribe in progress (a share lock on PostgreSQL, the single writer on SQLite)."""
    from newsletter.sending.ledger import Ledger
    from newsletter.subscribers import store as subscribers

    reader = add_reader("leaving@example.com")
    (delivery_id,), newsletter_id = queued_deliveries(sending_digest(), [reader])
    ledger = Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="the-task")
    claimed: list[bool] = []
    try:
        with db.session_scope() as session:
            subscribers.unsubscribe(session, subscriber_id=reader, source="test")
            session.flush()  # written, not committed: the subscription row is held
            claim = threading.Thread(target=lambda: claimed.append(ledger.claim([delivery_id])))
            claim.start()
            claim.join(0.5)
            assert claim.is_alive(), "the claim did not wait for the unsubscribe"
        claim.join(10)
    finally:
        ledger.close()
    assert claimed == [set()]


@pytest.mark.parametrize("door", ["one-click", "preferences", "erase"])
def test_leaving_is_answered_only_after_the_message_in_flight(clean_db: str, door: str) -> None:
    """The other order: the claim came first. Whichever way the reader leaves, the answer
    waits for that message's outcome: nothing reaches them after they were told."""
    from fastapi.testclient import TestClient

    from newsletter.core.tokens import Purpose, make_reader_token, make_token
    from newsletter.sending.ledger import Ledger
    from newsletter.web.app import create_app

    reader = add_reader("leaving@example.com")
    (delivery_id,), newsletter_id = queued_deliveries(sending_digest(), [reader])
    ledger = Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="the-task")
    assert ledger.claim([delivery_id])
    marked_at: list[float] = []

    def send_slowly() -> None:
        time.sleep(0.6)  # the relay takes its time
        ledger.sent(delivery_id, "<in-flight@plataforma.test>")
        ledger.flush()
        marked_at.append(time.monotonic())

    secret = get_settings().secret_key
    sender = threading.Thread(target=send_slowly)
    with TestClient(create_app()) as client:
        sender.start()
        try:
            if door == "one-click":
                token = make_token(secret, Purpose.UNSUBSCRIBE, reader, newsletter_id)
                reply = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
            elif door == "preferences":  # every newsletter unticked
                token = make_token(secret, Purpose.PREFERENCES, reader)
                reply = client.post(f"/preferences/{token}", data={"language": "en"})
            else:  # the erasure confirmed from the link mailed to the reader
                token = make_reader_token(secret, Purpose.ERASE, reader, 0)
                reply = client.post(f"/erase/{token}")
            answered_at = time.monotonic()
        finally:
            sender.join()
            ledger.close()
    assert reply.status_code == 200, reply.text
    assert marked_at and answered_at >= marked_at[0]
    with db.session_scope() as session:
        status = session.scalar(select(Delivery.status).where(Delivery.id == delivery_id))
    assert status == DeliveryStatus.SENT


def test_an_unsubscribe_does_not_wait_for_a_claim_of_a_dead_worker(clean_db: str) -> None:
    from newsletter.subscribers import store as subscribers

    reader = add_reader("leaving@example.com")
    (delivery_id,), _ = queued_deliveries(sending_digest(), [reader])
    with db.session_scope() as session:
        delivery = session.get_one(Delivery, delivery_id)
        delivery.status, delivery.claimed_at = DeliveryStatus.SENDING, datetime.now(UTC)
    with db.session_scope() as session:
        assert subscribers.sends_in_flight(
            session, subscriber_id=reader, within=timedelta(minutes=2)
        )
        delivery = session.get_one(Delivery, delivery_id)
        delivery.claimed_at = datetime.now(UTC) - timedelta(minutes=5)  # its worker died
    with db.session_scope() as session:
        assert not subscribers.sends_in_flight(
            session, subscriber_id=reader, within=timedelta(minutes=2)
        )


def test_a_reclaim_that_finds_the_reader_gone_skips_what_it_held(clean_db: str) -> None:
    """Review finding: a claim that went through before the connection was lost, run
    again after the reader left, fails; the delivery it held must not stay claimed until
    the sweeper (the digest could not finish, the unsubscribe would wait for it)."""
    from newsletter.sending.ledger import Ledger
    from newsletter.subscribers import store as subscribers

    reader = add_reader("leaving@example.com")
    (delivery_id,), newsletter_id = queued_deliveries(sending_digest(), [reader])
    ledger = Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="the-task")
    try:
        assert ledger.claim([delivery_id])
        with db.session_scope() as session:
            subscribers.unsubscribe(session, subscriber_id=reader, source="test")
        assert not ledger.claim([delivery_id])  # the same claim, run again
        ledger.skip_if_ineligible(delivery_id)
    finally:
        ledger.close()
    with db.session_scope() as session:
        assert session.get_one(Delivery, delivery_id).status == DeliveryStatus.SKIPPED


def test_a_release_run_late_never_takes_back_another_tasks_claim(clean_db: str) -> None:
    from newsletter.sending.ledger import Ledger

    reader = add_reader("staying@example.com")
    (delivery_id,), newsletter_id = queued_deliveries(sending_digest(), [reader])
    first = Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="first")
    second = Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="second")
    try:
        assert first.claim([delivery_id])
        assert first.release(delivery_id, "451 try later")
        assert second.claim([delivery_id])
        first.release(delivery_id, "451 try later")  # the first release, run again
    finally:
        first.close()
        second.close()
    with db.session_scope() as session:
        delivery = session.get_one(Delivery, delivery_id)
        assert (delivery.status, delivery.claimed_by) == (DeliveryStatus.SENDING, "second")


# --- a worker machine lost: the heartbeats and the holds, without a worker ----------------


@pytest.fixture
def no_workers(clean_db: str) -> str:
    """clean_db keeps the workers (a module's worker stays registered): none here."""
    from sqlalchemy import delete

    from newsletter.core.models import Worker

    with db.session_scope() as session:
        session.execute(delete(Worker))
    return clean_db


def register_worker(instance_id: str, *, seen: datetime, stopped: bool = False) -> None:
    from newsletter.sending import workers

    with db.session_scope() as session:
        workers.register(
            session,
            instance_id=instance_id,
            name=f"{instance_id}@machine",
            hostname="machine",
            pid=1,
            concurrency=1,
            now=seen,
        )
        if stopped:
            workers.stopped(session, instance_id=instance_id, now=seen)


def held(delivery_ids: list[int]) -> dict[int, tuple[str, str | None]]:
    with db.session_scope() as session:
        return {
            d.id: (d.status, d.claimed_by)
            for d in session.scalars(select(Delivery).where(Delivery.id.in_(delivery_ids)))
        }


def test_what_a_lost_worker_held_is_queued_again_once_and_a_live_ones_is_not(
    no_workers: str,
) -> None:
    from newsletter.sending import ledger

    now = datetime.now(UTC)
    register_worker("lost", seen=now - timedelta(seconds=50))
    register_worker("alive", seen=now - timedelta(seconds=5))
    readers = [add_reader(f"reader{n}@example.com") for n in range(5)]
    digest_id = sending_digest()
    ids, _ = queued_deliveries(digest_id, readers)
    with db.session_scope() as session:
        ledger.take(
            session, digest_id=digest_id, delivery_ids=ids[:3], claimant="lost|t1", task="t1"
        )
        ledger.take(
            session, digest_id=digest_id, delivery_ids=ids[3:], claimant="alive|t2", task="t2"
        )
        # The lost worker had one message in flight: claimed, never marked.
        session.get_one(Delivery, ids[0]).status = DeliveryStatus.SENDING
    with db.session_scope() as session:
        lost, batches = sweeper.lost_workers_batches(
            session, lost_after=timedelta(seconds=45), size=2, now=now
        )
    assert lost == ["lost"]
    assert batches == [(digest_id, ids[:2]), (digest_id, ids[2:3])]
    assert held(ids) == {
        **{i: (DeliveryStatus.QUEUED, None) for i in ids[:3]},
        **{i: (DeliveryStatus.QUEUED, "alive|t2") for i in ids[3:]},
    }
    with db.session_scope() as session:  # given back once: the next sweep finds nothing
        assert sweeper.lost_workers_batches(
            session, lost_after=timedelta(seconds=45), size=2, now=now
        ) == ([], [])


def test_a_worker_that_stopped_cleanly_leaves_nothing_held(no_workers: str) -> None:
    from newsletter.sending import ledger

    now = datetime.now(UTC)
    register_worker("stopped", seen=now - timedelta(seconds=1), stopped=True)
    register_worker("another", seen=now - timedelta(seconds=1))
    digest_id = sending_digest()
    ids, _ = queued_deliveries(digest_id, [add_reader("a@example.com")])
    with db.session_scope() as session:
        ledger.take(session, digest_id=digest_id, delivery_ids=ids, claimant="stopped|t", task="t")
    with db.session_scope() as session:
        lost, batches = sweeper.lost_workers_batches(
            session, lost_after=timedelta(seconds=45), size=10, now=now
        )
    assert (lost, batches) == (["stopped"], [(digest_id, ids)])


def test_a_held_delivery_is_left_to_its_batch_but_its_own_task_takes_it_back(
    no_workers: str,
) -> None:
    """Two batches over one delivery (the sweeper queued it again): the one that holds it
    sends it; the other's claim fails. A task run again elsewhere takes back its own."""
    from newsletter.sending import ledger
    from newsletter.sending.ledger import Ledger

    digest_id = sending_digest()
    (delivery_id,), newsletter_id = queued_deliveries(digest_id, [add_reader("a@example.com")])
    with db.session_scope() as session:
        ledger.take(
            session, digest_id=digest_id, delivery_ids=[delivery_id], claimant="A|t1", task="t1"
        )
        ledger.take(
            session, digest_id=digest_id, delivery_ids=[delivery_id], claimant="B|t2", task="t2"
        )
    assert held([delivery_id])[delivery_id] == (DeliveryStatus.QUEUED, "A|t1")
    other = Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="B|t2")
    try:
        assert not other.claim([delivery_id])
    finally:
        other.close()
    # Task t1 run again on worker C (its process died; the broker gave it to another).
    with db.session_scope() as session:
        ledger.take(
            session, digest_id=digest_id, delivery_ids=[delivery_id], claimant="C|t1", task="t1"
        )
    mine = Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="C|t1")
    try:
        assert mine.claim([delivery_id])
    finally:
        mine.close()
    assert held([delivery_id])[delivery_id] == (DeliveryStatus.SENDING, "C|t1")


def test_the_heartbeats_are_the_one_answer_to_which_workers_are_online(no_workers: str) -> None:
    from newsletter.ops import monitoring

    now = datetime.now(UTC)
    register_worker("fresh", seen=now - timedelta(seconds=3))
    register_worker("silent", seen=now - timedelta(minutes=2))
    register_worker("done", seen=now - timedelta(seconds=3), stopped=True)
    settings = get_settings()
    with db.session_scope() as session:
        found = {
            w["name"]: w["state"]
            for w in monitoring.workers(session, settings)
            if w["name"] in {"fresh@machine", "silent@machine", "done@machine"}
        }
    assert found == {"fresh@machine": "online", "silent@machine": "lost", "done@machine": "stopped"}
    checks = monitoring.readiness(settings)
    assert checks["workers"]["ok"] and "fresh@machine" in checks["workers"]["workers"]


def test_nobody_is_taken_for_lost_while_no_worker_at_all_is_heard(no_workers: str) -> None:
    """Every heartbeat old at once is the database back from an outage, not every machine
    lost: the live batches are left alone until the heartbeats resume."""
    from newsletter.sending import ledger

    now = datetime.now(UTC)
    register_worker("one", seen=now - timedelta(seconds=90))
    register_worker("two", seen=now - timedelta(seconds=90))
    digest_id = sending_digest()
    ids, _ = queued_deliveries(digest_id, [add_reader("a@example.com")])
    with db.session_scope() as session:
        ledger.take(session, digest_id=digest_id, delivery_ids=ids, claimant="one|t", task="t")
    with db.session_scope() as session:
        assert sweeper.lost_workers_batches(
            session, lost_after=timedelta(seconds=45), size=10, now=now
        ) == ([], [])
    register_worker("three", seen=now)  # a heartbeat again: now "one" and "two" are lost
    with db.session_scope() as session:
        lost, batches = sweeper.lost_workers_batches(
            session, lost_after=timedelta(seconds=45), size=10, now=now
        )
    assert sorted(lost) == ["one", "two"] and batches == [(digest_id, ids)]


def test_the_stale_sweep_leaves_a_slow_but_living_workers_batch_alone(no_workers: str) -> None:
    from newsletter.sending import ledger

    register_worker("slow", seen=datetime.now(UTC))
    digest_id = sending_digest()
    ids, _ = queued_deliveries(
        digest_id, [add_reader("a@example.com"), add_reader("b@example.com")]
    )
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    with db.session_scope() as session:
        ledger.take(session, digest_id=digest_id, delivery_ids=ids[:1], claimant="slow|t", task="t")
        for delivery in session.scalars(select(Delivery).where(Delivery.id.in_(ids))):
            delivery.updated_at = long_ago
    with db.session_scope() as session:
        batches = sweeper.stale_batches(
            session, stale_after=timedelta(minutes=5), size=50, lost_after=timedelta(seconds=45)
        )
    # The free one is queued again; the one the living worker holds stays its own.
    assert batches == [(digest_id, ids[1:])]
    assert held(ids[:1]) == {ids[0]: (DeliveryStatus.QUEUED, "slow|t")}
