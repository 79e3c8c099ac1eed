"""The fault drills: one digest to N readers through a private stack, with one fault each.

Each drill loads N confirmed readers (and a few who must never be mailed: pending,
unsubscribed, bounced, suppressed), starts 2 worker processes (`celery -A worker worker
--concurrency=1` each), beat and the drills' SMTP server, sends one digest while doing
its harm, and counts at the SMTP server: delivered, lost (eligible, never accepted),
duplicated (more than one accepted message for one delivery, by its VERP sender),
wrongly mailed (accepted for a reader who must not get it) and the time to finish.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.seed import seed_newsletter
from drills.stack import Stack

VERP = re.compile(r"bounces\+s(\d+)d(\d+)-")
INELIGIBLE_KINDS = ("pending", "unsubscribed", "bounced", "suppressed")


@dataclass
class Result:
    drill: str
    subscribers: int
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    wrongly_mailed: int = 0
    kills: int = 0
    # Deliveries claimed together (settings.delivery_claim_group): what a kill may resend.
    claim_group: int = 1
    restarts: int = 0
    seconds: float = 0.0
    # From the harm (a machine killed) to the last reader's delivery, when the drill says.
    recovery_seconds: float | None = None
    state: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    # Messages sent by each worker (its node name): the load shared between machines.
    by_worker: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.state == "sent"
            and self.lost == 0
            and self.wrongly_mailed == 0
            # A restarted service must duplicate nothing: only a worker killed between
            # the relay's reply and the mark may send its claim group's messages twice.
            and self.duplicated <= self.kills * self.claim_group
            and not any(note.startswith("FAIL") for note in self.notes)
        )


@dataclass
class Drill:
    """What one drill changes: SMTP faults, settings, and the harm done during the send."""

    name: str
    what: str
    harm: Callable[[Run], None] | None = None
    smtp_faults: Callable[[int], dict[str, Any]] = lambda n: {}
    settings: dict[str, str] = field(default_factory=dict)
    rejected_share: float = 0.0  # readers whose address the SMTP server refuses with 550
    web: bool = False
    # Every reader delivered within this many seconds of the harm, or the drill fails.
    recover_within: float | None = None
    # Each worker machine must have sent at least this share of the digest.
    each_machine_share: float = 0.0


class Run:
    """One drill in progress: its stack, its readers, and whether the digest is done."""

    def __init__(self, drill: Drill, subscribers: int, smtp_delay: float) -> None:
        self.drill = drill
        self.n = subscribers
        self.rng = random.Random(20_000)
        self.rejected = self._rejected_addresses()
        faults = {**drill.smtp_faults(subscribers), "delay": smtp_delay}
        if self.rejected:
            faults["reject"] = sorted(self.rejected)
        self.stack = Stack(name=drill.name, smtp_faults=faults, settings=drill.settings)
        self.done = threading.Event()
        self.digest_id = 0
        self.unsubscribed_at: dict[int, float] = {}  # subscriber id: time of the 200
        self.notes: list[str] = []
        self.harmed_at: float | None = None  # time.monotonic() of the harm, when it counts

    def _rejected_addresses(self) -> set[str]:
        count = int(self.n * self.drill.rejected_share)
        return {f"reader{n}@example.com" for n in self.rng.sample(range(self.n), count)}

    # --- progress, for the harm to time itself ------------------------------------------

    def sent(self) -> int:
        """Deliveries recorded sent so far (0 while the database is down)."""
        from sqlalchemy import func, select

        from newsletter.core import db
        from newsletter.core.models import Delivery

        try:
            with db.session_scope() as session:
                return int(
                    session.scalar(
                        select(func.count())
                        .select_from(Delivery)
                        .where(Delivery.digest_id == self.digest_id, Delivery.status == "sent")
                    )
                    or 0
                )
        except Exception:
            return 0

    def wait_for_sent(self, share: float) -> bool:
        """Wait until that share of the readers has been sent; False if the digest ended."""
        while not self.done.is_set():
            if self.sent() >= self.n * share:
                return True
            time.sleep(0.2)
        return False


def run(drill: Drill, subscribers: int, *, smtp_delay: float = 0.0, timeout: float = 0) -> Result:
    current = Run(drill, subscribers, smtp_delay)
    stack = current.stack
    os.environ.update(stack.env)
    timeout = timeout or max(300.0, subscribers / 20)
    try:
        stack.up()
        from newsletter.app.queue import configure
        from newsletter.core import db
        from newsletter.core.config import get_settings
        from newsletter.core.schema import upgrade
        from newsletter.digests import lifecycle
        from newsletter.tasks import jobs as tasks

        get_settings.cache_clear()
        configure(get_settings())  # the dispatch below is queued from this process
        db.reset()
        upgrade(db.get_engine())
        ineligible = _load(subscribers)
        for index in range(len(stack.workers)):
            stack.start_worker(index)
        stack.start_beat()
        if drill.web:
            stack.start_web()
        stack.wait_workers_ready()

        started = time.monotonic()
        with db.session_scope() as session:
            current.digest_id = lifecycle.create_digest(session, newsletter_slug="daily").id
        with db.session_scope() as session:
            lifecycle.start_due(session)
        tasks.dispatch_digest.delay(current.digest_id)
        harm = None
        if drill.harm is not None:
            harm = threading.Thread(target=drill.harm, args=(current,), daemon=True)
            harm.start()
        state = _wait_until_final(current, started + timeout)
        ended = time.monotonic()
        current.done.set()
        if harm is not None:
            harm.join(timeout=60)
        time.sleep(1)  # a message still in flight at the end is counted too
        result = _tally(current, ineligible, state, ended - started)
        if current.harmed_at is not None:
            result.recovery_seconds = round(ended - current.harmed_at, 1)
            if drill.recover_within and result.recovery_seconds > drill.recover_within:
                result.notes.append(
                    f"FAIL: the last reader was delivered {result.recovery_seconds:.0f} s after "
                    f"the harm, more than {drill.recover_within:.0f} s"
                )
    finally:
        current.done.set()
        keep = os.environ.get("DRILLS_KEEP") == "1"
        stack.down(keep=keep)
        if keep:
            print(f"kept {stack.dir}")
    return result


def _wait_until_final(current: Run, deadline: float) -> str:
    from newsletter.core import db
    from newsletter.digests import reports

    state = "sending"
    while time.monotonic() < deadline:
        try:
            with db.session_scope() as session:
                state = reports.digest_status(session, current.digest_id)["state"]
        except Exception:  # the database is being restarted
            state = "sending"
        if state not in ("scheduled", "sending"):
            return str(state)
        time.sleep(0.25)
    return f"{state} (timed out)"


def _tally(current: Run, ineligible: dict[int, str], state: str, seconds: float) -> Result:
    from sqlalchemy import func, select

    from newsletter.core import db
    from newsletter.core.config import get_settings
    from newsletter.core.models import Delivery, Subscriber, Subscription, Worker

    stack = current.stack
    accepted: Counter[int] = Counter()  # delivery id: accepted messages
    accepted_by_reader: dict[int, list[float]] = {}
    rejected_tries: Counter[str] = Counter()
    for line in stack.smtp_log.read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "refused" and record["code"] == 550:
            rejected_tries[record["to"]] += 1
        if record["kind"] != "accepted":
            continue
        found = VERP.search(record["sender"] or "")
        if not found:
            current.notes.append(f"FAIL: a message with no VERP sender: {record['sender']}")
            continue
        subscriber_id, delivery_id = int(found.group(1)), int(found.group(2))
        accepted[delivery_id] += 1
        accepted_by_reader.setdefault(subscriber_id, []).append(record["t"])

    with db.session_scope() as session:
        counts = dict(
            session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.digest_id == current.digest_id)
                .group_by(Delivery.status)
            ).all()
        )
        readers = dict(session.execute(select(Subscriber.id, Subscriber.email)).all())
        sent_by = session.execute(
            select(Delivery.claimed_by, func.count())
            .where(Delivery.digest_id == current.digest_id, Delivery.status == "sent")
            .group_by(Delivery.claimed_by)
        ).all()
        names = dict(session.execute(select(Worker.id, Worker.name)).all())
        rejected_status = dict(
            session.execute(
                select(Subscriber.email, Delivery.status)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .where(
                    Delivery.digest_id == current.digest_id,
                    Subscriber.email.in_(sorted(current.rejected)),
                )
            ).all()
        )

        claimed = {
            subscriber_id: at.timestamp()
            for subscriber_id, at in session.execute(
                select(Delivery.subscriber_id, Delivery.claimed_at).where(
                    Delivery.digest_id == current.digest_id, Delivery.claimed_at.is_not(None)
                )
            ).all()
        }
        left = {
            subscriber_id: at.timestamp()
            for subscriber_id, at in session.execute(
                select(Subscription.subscriber_id, Subscription.unsubscribed_at).where(
                    Subscription.unsubscribed_at.is_not(None)
                )
            ).all()
        }

    result = Result(
        drill=current.drill.name,
        subscribers=current.n,
        kills=stack.kills,
        claim_group=get_settings().delivery_claim_group,
        restarts=stack.restarts,
        seconds=round(seconds, 1),
        state=state,
        counts={str(k): int(v) for k, v in counts.items()},
    )
    for holder, count in sent_by:
        name = names.get((holder or "").partition("|")[0], "(unknown)")
        result.by_worker[name] = result.by_worker.get(name, 0) + int(count)
    share = current.drill.each_machine_share
    if share and (len(result.by_worker) < 2 or min(result.by_worker.values()) < share * current.n):
        current.notes.append(
            f"FAIL: the load was not shared (each machine {share:.0%} at least): {result.by_worker}"
        )
    in_flight = 0
    result.duplicated = sum(count - 1 for count in accepted.values() if count > 1)
    for subscriber_id, email in readers.items():
        times = accepted_by_reader.get(subscriber_id, [])
        if subscriber_id in ineligible or email in current.rejected:
            result.wrongly_mailed += len(times)
        elif subscriber_id in current.unsubscribed_at:
            # The unsubscribe answers only once a message in flight has gone: anything
            # accepted after the 200 is wrongly mailed, however early its claim was.
            after = [t for t in times if t > current.unsubscribed_at[subscriber_id]]
            result.wrongly_mailed += len(after)
            if after and claimed.get(subscriber_id, 0.0) < left.get(subscriber_id, 0.0):
                in_flight += len(after)
        elif times:
            result.delivered += 1
        else:
            result.lost += 1
    if current.rejected:
        not_bounced = [e for e in current.rejected if rejected_status.get(e) != "bounced"]
        retried = [e for e, tries in rejected_tries.items() if tries > 1]
        result.lost += len(not_bounced)
        result.notes.append(
            f"550 readers: {len(current.rejected)}, ended bounced: "
            f"{len(current.rejected) - len(not_bounced)}, tried more than once: {len(retried)}"
        )
        if retried:
            result.notes.append(f"FAIL: 550 addresses retried: {sorted(retried)[:5]}")
    if current.unsubscribed_at:
        result.notes.append(
            f"accepted after the 200 though claimed before the unsubscribe committed "
            f"(in flight, counted as wrongly mailed): {in_flight}"
        )
        mailed_before = sum(
            1
            for s, t200 in current.unsubscribed_at.items()
            if any(t <= t200 for t in accepted_by_reader.get(s, []))
        )
        result.notes.append(
            f"one-click unsubscribes answered 200: {len(current.unsubscribed_at)}; "
            f"of them mailed before their 200: {mailed_before}"
        )
    result.notes.extend(current.notes)
    return result


def _load(count: int) -> dict[int, str]:
    """N confirmed readers and ten fresh articles; the ineligible readers' ids and kinds."""
    from sqlalchemy import insert

    from newsletter.core import db
    from newsletter.core.models import Subscriber, Subscription
    from newsletter.subscribers import suppressions

    now = datetime.now(UTC)
    extra = max(5, count // 100)
    with db.session_scope() as session:
        newsletter_id = seed_newsletter(session, source="drill").id
        people = [(f"reader{n}@example.com", "eligible") for n in range(count)]
        people += [
            (f"{kind}{n}@example.com", kind) for kind in INELIGIBLE_KINDS for n in range(extra)
        ]
        # Shuffled, so that the ineligible sit among the others in every batch.
        random.Random(1).shuffle(people)
        kinds: dict[int, str] = {}
        for start in range(0, len(people), 10_000):
            chunk = people[start : start + 10_000]
            ids = session.scalars(
                insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True),
                [
                    {
                        "email": email,
                        "email_key": email,
                        "name": f"Leitor {start + i}",
                        "language": "en",
                        "topics": [],
                        "status": "bounced" if kind == "bounced" else "active",
                        "soft_bounce_count": 0,
                        "time_zone": "Europe/Lisbon",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i, (email, kind) in enumerate(chunk)
                ],
            ).all()
            session.execute(
                insert(Subscription),
                [
                    {
                        "subscriber_id": subscriber_id,
                        "newsletter_id": newsletter_id,
                        "status": {"pending": "pending", "unsubscribed": "unsubscribed"}.get(
                            kind, "subscribed"
                        ),
                        "created_at": now,
                        "confirmed_at": None if kind == "pending" else now,
                        "consent_source": "drill",
                    }
                    for subscriber_id, (_, kind) in zip(ids, chunk, strict=True)
                ],
            )
            kinds.update(
                {i: kind for i, (_, kind) in zip(ids, chunk, strict=True) if kind != "eligible"}
            )
        for email, kind in people:
            if kind == "suppressed":
                suppressions.add(session, email=email, reason="manual", detail="drill")
    return kinds


# --- the harms ------------------------------------------------------------------------


def kill_workers(current: Run) -> None:
    """SIGKILL a worker (main and pool process) every few seconds, in turn; start it again."""
    stack = current.stack
    every = float(os.environ.get("DRILLS_KILL_EVERY", "5"))
    if not current.wait_for_sent(0.02):
        return
    index = 0
    while not current.done.wait(every):
        stack.kill_worker(index)
        time.sleep(0.5)
        stack.start_worker(index)
        index = 1 - index


def kill_machine(current: Run) -> None:
    """At 20% sent, one worker machine dies whole (SIGKILL to its process group, as a power
    loss); a fresh worker starts in its place. The others must notice and send what it held."""
    from newsletter.core import db
    from newsletter.core.config import get_settings
    from newsletter.sending import workers

    stack = current.stack
    if not current.wait_for_sent(0.2):
        current.notes.append("FAIL: the digest ended before the kill")
        return
    with db.session_scope() as session:
        before = {w.id for w in workers.workers(session, lost_after=_lost_after()) if w.online}
    sent = current.sent()
    stack.kill_worker(0)
    current.harmed_at = time.monotonic()
    stack.start_worker(0)
    current.notes.append(f"worker 0 killed whole at {sent:,} sent; a fresh one started")
    # How long until the operator's view (the heartbeats) says it is lost.
    while not current.done.wait(0.5):
        with db.session_scope() as session:
            lost = [
                w
                for w in workers.workers(session, lost_after=_lost_after())
                if w.id in before and w.state == "lost"
            ]
        if lost:
            seen = time.monotonic() - current.harmed_at
            current.notes.append(
                f"shown lost after {seen:.0f} s (NEWSLETTER_WORKER_LOST_SECONDS "
                f"{get_settings().worker_lost_seconds:g})"
            )
            return


def _lost_after() -> Any:
    from datetime import timedelta

    from newsletter.core.config import get_settings

    return timedelta(seconds=get_settings().worker_lost_seconds)


def restart_redis(current: Run) -> None:
    if current.wait_for_sent(0.3):
        current.stack.restart_redis()


def restart_postgres(current: Run) -> None:
    if current.wait_for_sent(0.3):
        current.stack.restart_postgres()


def hang_smtp(current: Run) -> None:
    """The relay stops answering for a while (longer than the SMTP timeout), then recovers."""
    seconds = float(os.environ.get("DRILLS_HANG_SECONDS", "30"))
    if current.wait_for_sent(0.3):
        current.stack.smtp_hang(True)
        current.notes.append(f"SMTP server hung for {seconds:.0f} s")
        time.sleep(seconds)
        current.stack.smtp_hang(False)


def one_click_unsubscribes(current: Run) -> None:
    """Readers not yet mailed press one-click unsubscribe (RFC 8058) while the digest goes."""
    import httpx
    from sqlalchemy import select

    from newsletter.core import db
    from newsletter.core.config import get_settings
    from newsletter.core.models import Newsletter, Subscriber
    from newsletter.core.tokens import Purpose, make_token

    settings = get_settings()
    wanted = min(1000, current.n // 5)
    with db.session_scope() as session:
        newsletter_id = session.scalar(select(Newsletter.id))
        later = session.scalars(
            select(Subscriber.id)
            .where(Subscriber.email.like("reader%"))
            .order_by(Subscriber.id)
            .offset(current.n // 2)
        ).all()
    chosen = random.Random(3).sample(list(later), min(wanted, len(later)))
    if not current.wait_for_sent(0.1):
        return
    url = f"http://127.0.0.1:{current.stack.web_port}/unsubscribe/"
    failures: list[str] = []

    def press(subscriber_id: int) -> None:
        token = make_token(settings.secret_key, Purpose.UNSUBSCRIBE, subscriber_id, newsletter_id)
        with httpx.Client(timeout=30) as client:
            reply = client.post(url + token, data={"List-Unsubscribe": "One-Click"})
        answered = time.time()
        if reply.status_code == 200:
            current.unsubscribed_at[subscriber_id] = answered
        else:
            failures.append(f"{subscriber_id}: {reply.status_code}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(press, chosen))
    if failures:
        current.notes.append(f"FAIL: {len(failures)} unsubscribes not answered 200: {failures[:3]}")


DRILLS = {
    drill.name: drill
    for drill in (
        Drill("kill-worker", "SIGKILL a worker every few seconds; start it again", kill_workers),
        Drill(
            "kill-machine",
            "at 20% sent, SIGKILL one worker's whole process group, as a machine lost; "
            "every reader delivered within 3 minutes of it",
            kill_machine,
            # The production defaults: no early sweep of stale deliveries to lean on.
            settings={"NEWSLETTER_STALE_AFTER_SECONDS": "2400"},
            recover_within=180.0,
        ),
        Drill(
            "two-machines",
            "two worker machines (own var/ and host name) on one Redis and one PostgreSQL: "
            "each reader once, each machine a fair share",
            each_machine_share=0.25,
        ),
        Drill("restart-redis", "restart Redis (no persistence) mid-send", restart_redis),
        Drill("restart-postgres", "restart PostgreSQL mid-send", restart_postgres),
        Drill(
            "smtp-flaky",
            "the relay answers 421/451 to 20% of recipients and drops 2% of connections",
            smtp_faults=lambda n: {"tempfail_share": 0.2, "tempfail_times": 2, "drop_share": 0.02},
        ),
        Drill(
            "smtp-550",
            "the relay answers 550 to a fixed 1% of addresses: bounced, never retried",
            rejected_share=0.01,
        ),
        Drill(
            "smtp-hang",
            "the relay hangs (no greeting, no reply) for a while, then answers again",
            hang_smtp,
            settings={"NEWSLETTER_SMTP_TIMEOUT_SECONDS": "3"},
        ),
        Drill(
            "unsubscribe",
            "1,000 one-click unsubscribes over HTTP during the send",
            one_click_unsubscribes,
            web=True,
        ),
    )
}


def report(result: Result) -> dict[str, Any]:
    return {**asdict(result), "ok": result.ok}
