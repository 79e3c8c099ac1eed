"""Digests through a real worker on Redis to a real SMTP server: once each, to the right people."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.core import db
from newsletter.core.clock import utcnow
from newsletter.core.config import get_settings
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    DigestState,
    Subscriber,
    SubscriberStatus,
    Subscription,
)
from newsletter.digests import batch as send_loop
from newsletter.digests import dispatcher, lifecycle, reports
from newsletter.digests.batch import GROUP_OVERRUN, GROUP_SECONDS
from newsletter.email.render import OutgoingMessage
from newsletter.sending.ledger import Ledger
from newsletter.sending.transport import SMTPTransport
from newsletter.subscribers import store as subscribers
from newsletter.subscribers import suppressions
from newsletter.tasks import jobs as tasks
from tests.conftest import Mailbox, wait_until_tasks_done
from tests.factories import add_fresh_story, add_reader, dispatched_daily, send_page

FINAL = {DigestState.SENT, DigestState.EMPTY, DigestState.CANCELLED, DigestState.FAILED}


@pytest.fixture
def world(clean_db: str, worker: subprocess.Popen[bytes], mailbox: Mailbox) -> Mailbox:
    """A clean database with one fresh article, a running worker, an empty mailbox."""
    add_fresh_story()
    return mailbox


def start(send_at: datetime | None = None, subject: str | None = None) -> int:
    with db.session_scope() as session:
        digest = lifecycle.create_digest(
            session, newsletter_slug="daily", send_at=send_at, subject=subject
        )
        digest_id = digest.id
    tasks.tick.delay()
    return digest_id


def status(digest_id: int) -> dict[str, object]:
    with db.session_scope() as session:
        return reports.digest_status(session, digest_id)


def wait_for_state(digest_id: int, states: set[str], timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        current = status(digest_id)
        if current["state"] in states:
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"digest {digest_id} still {current} after {timeout}s")
        time.sleep(0.2)


def recipients(mailbox: Mailbox) -> Counter[str]:
    return Counter(r for m in mailbox.messages for r in m.rcpt_tos)


def test_every_eligible_reader_gets_exactly_one_and_nobody_else(world: Mailbox) -> None:
    readers = [f"reader{n}@example.com" for n in range(120)]  # three batches of 50
    for email in readers:
        add_reader(email)
    add_reader("pending@example.com", confirmed=False)
    gone = add_reader("gone@example.com")
    bounced = add_reader("bounced@example.com")
    add_reader("suppressed@example.com")
    with db.session_scope() as session:
        subscribers.unsubscribe(session, subscriber_id=gone, source="test")
        subscribers.get_subscriber(session, bounced).status = SubscriberStatus.BOUNCED
        suppressions.suppress(
            session, email_key="suppressed@example.com", email=None, reason="manual"
        )
    digest_id = start()
    final = wait_for_state(digest_id, FINAL)
    assert final["state"] == DigestState.SENT
    assert final["counts"] == {
        "total": 120,
        "queued": 0,
        "sent": 120,
        "failed": 0,
        "skipped": 0,
        "bounced": 0,
    }
    assert recipients(world) == Counter({email: 1 for email in readers})
    message = world.to("reader7@example.com")[0]
    assert message.message["Subject"] == "Macau reopens the bridge"
    assert message.mail_from.startswith("bounces+s") and "d" in message.mail_from.split("-")[0]


def test_an_unsubscribe_between_queue_and_send_is_honoured(world: Mailbox) -> None:
    stays = add_reader("stays@example.com")
    leaves = add_reader("leaves@example.com")
    with db.session_scope() as session:
        digest = lifecycle.create_digest(session, newsletter_slug="daily")
        digest_id = digest.id
    with db.session_scope() as session:
        assert lifecycle.start_due(session) == [digest_id]
    with db.session_scope() as session:
        page = dispatcher.dispatch_page(session, digest_id=digest_id, settings=get_settings())
    assert len(page.queued) == 2  # both queued ...
    with db.session_scope() as session:  # ... then one leaves before the batch runs
        subscribers.unsubscribe(session, subscriber_id=leaves, source="test")
    with db.session_scope() as session:
        assert dispatcher.dispatch_page(session, digest_id=digest_id, settings=get_settings()).done
    tasks.send_batch.delay(digest_id, page.queued)
    final = wait_for_state(digest_id, FINAL)
    assert final["counts"]["sent"] == 1 and final["counts"]["skipped"] == 1
    assert recipients(world) == Counter({"stays@example.com": 1})
    assert stays != leaves


def test_a_suppression_added_mid_batch_stops_the_next_message(world: Mailbox) -> None:
    """An operator suppresses an address while its batch is being sent: the claim of that
    reader's delivery, in a later claim group of the same batch, sees it (it used to be
    read once per batch)."""
    readers = [f"reader{n}@example.com" for n in range(get_settings().delivery_claim_group + 2)]
    for email in readers:
        add_reader(email)
    add_reader("late@example.com")  # the highest id: the batch's last message
    world.delay = 0.2
    digest_id = start()
    world.wait_until(lambda: len(world.messages) >= 1)
    with db.session_scope() as session:
        suppressions.add(session, email="late@example.com", reason="manual")
    final = wait_for_state(digest_id, FINAL)
    assert recipients(world) == Counter({email: 1 for email in readers})
    assert final["counts"]["sent"] == len(readers) and final["counts"]["skipped"] == 1
    with db.session_scope() as session:
        skipped = session.scalars(
            select(Delivery).where(Delivery.status == DeliveryStatus.SKIPPED)
        ).one()
        assert subscribers.get_subscriber(session, skipped.subscriber_id or 0).email == (
            "late@example.com"
        )


def test_temporary_failures_are_retried_and_delivered(world: Mailbox) -> None:
    add_reader("greylisted@example.com")
    add_reader("fine@example.com")
    world.rcpt_replies["greylisted@example.com"] = [
        "451 4.7.1 Greylisted, try again",
        "452 4.2.2 Mailbox full",
    ]
    digest_id = start()
    final = wait_for_state(digest_id, FINAL)
    assert final["state"] == DigestState.SENT and final["counts"]["sent"] == 2
    assert recipients(world) == Counter({"greylisted@example.com": 1, "fine@example.com": 1})
    with db.session_scope() as session:
        attempts = session.scalars(select(Delivery.attempts).order_by(Delivery.id)).all()
    assert sorted(attempts) == [1, 3]


def test_a_permanent_failure_bounces_without_retry(world: Mailbox) -> None:
    dead = add_reader("dead@example.com")
    add_reader("alive@example.com")
    world.rcpt_replies["dead@example.com"] = ["550 5.1.1 No such user"] * 5
    digest_id = start()
    final = wait_for_state(digest_id, FINAL)
    assert final["counts"]["bounced"] == 1 and final["counts"]["sent"] == 1
    assert world.rcpt_replies["dead@example.com"] == ["550 5.1.1 No such user"] * 4  # asked once
    with db.session_scope() as session:
        reader = subscribers.get_subscriber(session, dead)
        assert reader.status == SubscriberStatus.BOUNCED
        assert suppressions.is_listed(session, "dead@example.com")
        assert [e.kind for e in reader.events][-1] == "bounced"
        delivery = session.scalars(select(Delivery).where(Delivery.subscriber_id == dead)).one()
        assert delivery.status == DeliveryStatus.BOUNCED and "5.1.1" in (delivery.last_error or "")


def test_a_failure_that_never_ends_is_recorded_as_failed(world: Mailbox) -> None:
    add_reader("always-busy@example.com")
    world.rcpt_replies["always-busy@example.com"] = ["421 4.3.2 Service not available"] * 50
    digest_id = start()
    final = wait_for_state(digest_id, FINAL, timeout=90)
    assert final["counts"]["failed"] == 1
    with db.session_scope() as session:
        delivery = session.scalars(select(Delivery)).one()
    assert delivery.attempts == get_settings().max_attempts
    assert "421" in (delivery.last_error or "")


def test_a_scheduled_digest_goes_at_its_time_and_once(world: Mailbox) -> None:
    add_reader("early@example.com")
    send_at = datetime.now(UTC) + timedelta(seconds=3)
    digest_id = start(send_at=send_at)
    tasks.tick.delay()
    wait_until_tasks_done()  # both ticks ran before the time
    assert status(digest_id)["state"] == DigestState.SCHEDULED and world.messages == []
    # The scenario is the clock: its time comes.
    time.sleep(max(0.0, (send_at - datetime.now(UTC)).total_seconds()) + 0.1)
    for _ in range(3):  # beats keep ticking: the digest goes once
        tasks.tick.delay()
    wait_for_state(digest_id, FINAL)
    wait_until_tasks_done()
    assert recipients(world) == Counter({"early@example.com": 1})


def test_pause_holds_the_rest_and_resume_sends_it(world: Mailbox) -> None:
    for n in range(40):
        add_reader(f"slow{n}@example.com")
    world.delay = 0.1
    digest_id = start()
    world.wait_until(lambda: len(world.messages) >= 5)
    with db.session_scope() as session:
        lifecycle.pause(session, digest_id=digest_id)
    wait_until_tasks_done()  # what was in flight finished; nothing new started
    assert len(world.messages) < 40
    assert status(digest_id)["state"] == DigestState.PAUSED
    world.delay = 0.0
    with db.session_scope() as session:
        _, batches = lifecycle.resume(session, digest_id=digest_id)
    for batch in batches:
        tasks.send_batch.delay(digest_id, batch)
    final = wait_for_state(digest_id, FINAL)
    assert final["state"] == DigestState.SENT
    assert recipients(world) == Counter({f"slow{n}@example.com": 1 for n in range(40)})


def test_cancel_skips_what_was_not_sent(world: Mailbox) -> None:
    for n in range(40):
        add_reader(f"stop{n}@example.com")
    world.delay = 0.1
    digest_id = start()
    world.wait_until(lambda: len(world.messages) >= 3)
    with db.session_scope() as session:
        lifecycle.cancel(session, digest_id=digest_id)
    wait_until_tasks_done()
    final = status(digest_id)
    assert final["state"] == DigestState.CANCELLED
    counts = final["counts"]
    assert counts["sent"] == len(world.messages) < 40
    assert counts["sent"] + counts["skipped"] == 40 and counts["queued"] == 0


def test_an_empty_digest_says_why(world: Mailbox) -> None:
    digest_id = start()
    final = wait_for_state(digest_id, FINAL)
    assert final["state"] == DigestState.EMPTY
    assert "Nobody is subscribed" in str(final["note"])


def pool_processes(worker: subprocess.Popen[bytes]) -> list[int]:
    children_file = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
    return [int(pid) for pid in children_file.read_text().split()]


def test_a_worker_child_killed_mid_batch_loses_nobody(
    world: Mailbox, worker: subprocess.Popen[bytes], database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("on SQLite the worker's pool is threads: no process of its own to kill")
    emails = [f"kill{n}@example.com" for n in range(45)]
    for email in emails:
        add_reader(email)
    world.delay = 0.05
    digest_id = start()
    world.wait_until(lambda: len(world.messages) >= 10)
    children = pool_processes(worker)
    assert len(children) == 2  # --concurrency=2
    for pid in children:  # the pool processes; one of them is mid-batch
        os.kill(pid, signal.SIGKILL)
    world.delay = 0.0
    final = wait_for_state(digest_id, FINAL, timeout=90)
    assert final["state"] == DigestState.SENT
    got = recipients(world)
    assert set(got) == set(emails)  # nobody lost
    duplicates = sum(count - 1 for count in got.values())
    # At most the claim group in flight: its messages' marks travel with the next claim.
    assert duplicates <= get_settings().delivery_claim_group, got


def test_the_pool_is_threads_on_sqlite_and_processes_elsewhere(
    world: Mailbox, worker: subprocess.Popen[bytes], database_url: str
) -> None:
    """SQLite's locks do not survive a fork (test_worker_pool): on SQLite nothing is forked."""
    add_reader("pool@example.com")
    final = wait_for_state(start(), FINAL)
    assert final["state"] == DigestState.SENT
    assert len(pool_processes(worker)) == (0 if database_url.startswith("sqlite") else 2)


@pytest.fixture
def client(world: Mailbox) -> Iterator[TestClient]:
    from newsletter.web.app import create_app

    with TestClient(create_app()) as test_client:
        test_client.headers["Authorization"] = f"Bearer {get_settings().admin_token}"
        yield test_client


def test_the_api_creates_follows_and_refuses_in_words(client: TestClient, world: Mailbox) -> None:
    add_reader("api@example.com")
    created = client.post("/api/digests", json={"newsletter": "daily", "subject": "Hoje"})
    assert created.status_code == 201
    body = created.json()
    assert set(body) >= {
        "id",
        "newsletter",
        "state",
        "scheduled_for",
        "counts",
        "started_at",
        "finished_at",
    }
    final = wait_for_state(body["id"], FINAL)
    assert client.get(f"/api/digests/{body['id']}").json()["counts"] == final["counts"]
    assert world.to("api@example.com")[0].message["Subject"] == "Hoje"
    assert client.post(f"/api/digests/{body['id']}/pause").status_code == 409
    assert client.get("/api/digests/999999").status_code == 404
    bad = client.post("/api/digests", json={"newsletter": "daily", "send_at": "tomorrow"})
    assert bad.status_code == 422 and "send_at" in bad.json()["detail"]
    unknown = client.post("/api/digests", json={"newsletter": "weekly"})
    assert unknown.status_code == 404
    assert (
        client.post(
            "/api/digests", json={"newsletter": "daily"}, headers={"Authorization": ""}
        ).status_code
        == 401
    )


def test_two_beats_at_once_make_one_recurring_digest(world: Mailbox) -> None:
    from newsletter.core.models import Digest, Newsletter
    from newsletter.digests import schedules

    add_reader("recurring@example.com")
    with db.session_scope() as session:
        newsletter = session.scalars(select(Newsletter)).one()
        newsletter.created_at = datetime.now(UTC) - timedelta(days=1)
        schedules.set_schedule(session, slug="daily", cron="*/15 * * * *", time_zone="Asia/Macau")
    first, second = tasks.tick.delay(), tasks.tick.delay()  # two schedulers, same moment
    world.wait_for("recurring@example.com")
    with db.session_scope() as session:
        digests = session.scalars(select(Digest)).all()
        assert len(digests) == 1 and digests[0].schedule_key is not None
        digest_id = digests[0].id
    wait_for_state(digest_id, FINAL)
    for _ in range(2):
        tasks.tick.delay()
    wait_until_tasks_done()
    with db.session_scope() as session:
        assert len(session.scalars(select(Digest)).all()) == 1
    assert recipients(world) == Counter({"recurring@example.com": 1})
    del first, second


def test_deliveries_whose_task_was_lost_are_queued_again(world: Mailbox) -> None:
    """A broker that restarted empty forgets the batches: the sweeper finds them again."""
    add_reader("lost1@example.com")
    add_reader("lost2@example.com")
    with db.session_scope() as session:
        digest_id = lifecycle.create_digest(session, newsletter_slug="daily").id
    with db.session_scope() as session:
        lifecycle.start_due(session)
    while True:  # dispatched, but the batch tasks are never queued: "lost"
        with db.session_scope() as session:
            if dispatcher.dispatch_page(session, digest_id=digest_id, settings=get_settings()).done:
                break
    time.sleep(1.2)
    assert status(digest_id)["state"] == DigestState.SENDING and world.messages == []
    settings = get_settings().model_copy(update={"stale_after_seconds": 1})
    tasks._sweep(settings)
    final = wait_for_state(digest_id, FINAL)
    assert final["counts"]["sent"] == 2
    assert recipients(world) == Counter({"lost1@example.com": 1, "lost2@example.com": 1})


class _BreaksAfter(SMTPTransport):
    """The real relay for `good` messages; then an error no batch expects (a bug, say)."""

    def __init__(self, url: str, good: int) -> None:
        super().__init__(url, timeout=10)
        self.good = good

    def send(
        self, *, envelope_from: str, recipient: str, data: bytes, wire_ready: bool = False
    ) -> str:
        if self.good == 0:
            raise RuntimeError("not an SMTP error")
        self.good -= 1
        return super().send(
            envelope_from=envelope_from, recipient=recipient, data=data, wire_ready=wire_ready
        )


def test_a_batch_ended_by_an_error_leaves_nothing_held_and_nothing_sent_twice(
    clean_db: str, mailbox: Mailbox
) -> None:
    """Nothing retries a batch that raised: what it held and did not send is let go for the
    sweeper, however far into a claim group the error came; what went is marked sent."""
    add_fresh_story()
    readers = [f"broken{n}@example.com" for n in range(20)]
    for email in readers:
        add_reader(email)
    digest_id, page = dispatched_daily()
    # Groups of 1, 2, 4 and then 8 on a relay this fast (next_group_size): the eleventh
    # message is inside a group, the error leaves the rest of it claimed and not sent.
    good = 10
    with pytest.raises(RuntimeError):
        send_page(
            digest_id,
            page,
            claimant="test-broken|task",
            transport=lambda url: _BreaksAfter(url, good),
        )

    assert len(mailbox.messages) == good
    with db.session_scope() as session:
        deliveries = session.scalars(select(Delivery).where(Delivery.digest_id == digest_id)).all()
    statuses = Counter(d.status for d in deliveries)
    assert statuses == {DeliveryStatus.SENT: good, DeliveryStatus.QUEUED: len(readers) - good}
    left = [d for d in deliveries if d.status == DeliveryStatus.QUEUED]
    # Free for the sweeper; none is counted as tried (the one the error came on did not go).
    assert [(d.claimed_by, d.attempts) for d in left] == [(None, 0)] * len(left)


def test_a_message_that_fails_to_render_gives_back_its_whole_claim_group(
    clean_db: str, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's messages are filled while its claim runs, before any of them goes: a
    filling that fails gives the whole group back, claimed and not one of it sent."""
    add_fresh_story()
    readers = [f"unrendered{n}@example.com" for n in range(20)]
    for email in readers:
        add_reader(email)
    digest_id, page = dispatched_daily()
    fill = send_loop._message
    filled: list[int] = []
    groups: list[list[int]] = []
    claim_soon = Ledger.claim_soon

    def failing_eleventh(*args: Any) -> OutgoingMessage:
        filled.append(args[2].id)
        if len(filled) == 11:
            raise RuntimeError("a template bug")
        return fill(*args)

    def recorded(ledger: Ledger, delivery_ids: list[int]) -> Any:
        groups.append(list(delivery_ids))
        return claim_soon(ledger, delivery_ids)

    monkeypatch.setattr(send_loop, "_message", failing_eleventh)
    monkeypatch.setattr(Ledger, "claim_soon", recorded)
    with pytest.raises(RuntimeError, match="a template bug"):
        send_page(digest_id, page, claimant="test-unrendered|task")

    # The groups before the one the eleventh filling was in went whole; none of that one.
    failing = groups[-1]
    assert filled[-1] in failing
    went = {delivery_id for group in groups[:-1] for delivery_id in group}
    assert len(went) < 11 <= len(went) + len(failing)
    assert len(mailbox.messages) == len(went)
    with db.session_scope() as session:
        deliveries = session.scalars(select(Delivery).where(Delivery.digest_id == digest_id)).all()
    assert {d.id for d in deliveries if d.status == DeliveryStatus.SENT} == went
    left = [d for d in deliveries if d.id not in went]
    assert len(left) == len(readers) - len(went)
    assert [(d.status, d.claimed_by, d.attempts) for d in left] == [
        (DeliveryStatus.QUEUED, None, 0)
    ] * len(left)


def test_the_ledger_refuses_a_statement_while_a_claim_is_under_way(
    clean_db: str, mailbox: Mailbox
) -> None:
    """A claim under way on its own thread has the ledger's connection: any other statement
    meanwhile is refused at once, never run on a connection two threads share."""
    if not clean_db.startswith("postgresql"):
        pytest.skip("on SQLite a claim is done before claim_soon returns")
    add_fresh_story()
    subscriber_id = add_reader("held@example.com")
    digest_id, page = dispatched_daily()
    engine = db.get_engine()
    with db.session_scope() as session:
        newsletter_id = session.scalar(select(Digest.newsletter_id).where(Digest.id == digest_id))
    assert newsletter_id is not None
    ledger = Ledger(engine, newsletter_id=newsletter_id, claimant="test-held|task")
    blocker = engine.connect()
    try:
        # The reader's subscription locked elsewhere: the claim's share lock waits for it.
        blocker.execute(
            select(Subscription.id)
            .where(Subscription.subscriber_id == subscriber_id)
            .with_for_update()
        )
        claiming = ledger.claim_soon(page.queued)
        looked: list[object] = []

        def look() -> None:
            try:
                looked.append(ledger.digest_state(digest_id))
            except RuntimeError as exc:
                looked.append(exc)

        # On a thread of its own: were the statement let through, it would wait for the
        # claim, and the claim for this test.
        looker = threading.Thread(target=look)
        looker.start()
        looker.join(10)
        assert len(looked) == 1 and "claim under way" in str(looked[0]), looked
        assert not claiming.done()
    finally:
        blocker.commit()
        blocker.close()
    assert claiming.result(timeout=30)[0] == set(page.queued)
    assert ledger.digest_state(digest_id) == DigestState.SENDING
    ledger.close()


@pytest.mark.parametrize("pause", [0.0, 0.06, "slows"])
def test_claim_groups_grow_on_a_fast_relay_and_stay_one_message_on_a_slow_one(
    clean_db: str, mailbox: Mailbox, pause: float | str
) -> None:
    """A claim group holds what the relay takes in about GROUP_SECONDS: on a fast relay the
    groups double (fewer statements a message); on a slow one each claim is one message,
    and a relay that slows down mid-group gets the rest of the group back at once: a reader
    who unsubscribes never waits behind a long group claimed before them."""
    settings = get_settings()
    add_fresh_story()
    for n in range(40):
        add_reader(f"paced{n}@example.com")
    digest_id, page = dispatched_daily()
    claimed_at_send: list[int] = []
    slower = [pause if isinstance(pause, float) else 0.0]  # the relay's pause, as it goes
    waited: list[float] = []

    class Paced(SMTPTransport):
        def send(
            self, *, envelope_from: str, recipient: str, data: bytes, wire_ready: bool = False
        ) -> str:
            if pause == "slows" and len(claimed_at_send) == 25:
                slower.append(0.15)
            # Claimed and not yet sent nor marked: this message and the rest of its group.
            with db.session_scope() as session:
                claimed_at_send.append(
                    len(
                        session.scalars(
                            select(Delivery.id).where(
                                Delivery.digest_id == digest_id,
                                Delivery.status == DeliveryStatus.SENDING,
                            )
                        ).all()
                    )
                )
                claimed = session.scalar(
                    select(Delivery.claimed_at)
                    .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                    .where(Delivery.digest_id == digest_id, Subscriber.email == recipient)
                )
            assert claimed is not None
            # How long this reader's claim waited for their message: what an unsubscribe
            # of theirs made at the claim would wait for.
            waited.append((utcnow() - claimed).total_seconds())
            time.sleep(slower[-1])
            return super().send(
                envelope_from=envelope_from, recipient=recipient, data=data, wire_ready=wire_ready
            )

    outcome = send_page(
        digest_id, page, claimant="test-paced|task", transport=lambda url: Paced(url, timeout=10)
    )

    assert outcome.sent == 40 and len(mailbox.messages) == 40
    assert len({m.rcpt_tos[0] for m in mailbox.messages}) == 40
    if pause == "slows":
        # The groups had grown; the one the slowdown caught went back after 0.4 s (three
        # messages at the new pace), and the next groups are one message each.
        assert max(claimed_at_send[:25]) > 4, claimed_at_send
        assert set(claimed_at_send[32:]) == {1}, claimed_at_send
        # No claim waited for more than the overrun (GROUP_SECONDS x GROUP_OVERRUN, 0.4 s)
        # and the one slow message that crossed it: the group the slowdown caught did not
        # go on at 0.15 s a message.
        assert GROUP_SECONDS * GROUP_OVERRUN == 0.4
        assert max(waited) < 0.4 + 0.15 + 0.25, waited
    elif pause:
        # Each claim a message; the one before it is marked with that claim.
        assert set(claimed_at_send) == {1}, claimed_at_send
    else:
        # The first group also renders the digest, so it may look slow; then they grow.
        assert claimed_at_send[0] == 1
        assert 4 < max(claimed_at_send) <= settings.delivery_claim_group, claimed_at_send
