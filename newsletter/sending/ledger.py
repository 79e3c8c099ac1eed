"""The delivery ledger: the one module that writes `deliveries`, and its status groups.

A delivery is one digest to one reader. Its row says where it stands: queued, claimed by a
worker (sending), or final (sent, bounced, failed, skipped). Invariant 2 — one digest
reaches each reader once — is kept here, not by the broker: a delivery is claimed
(committed) before its message goes out and marked (committed) after, so a batch run
again sends only what was not sent. Invariant 1 is checked in the claim itself, through
the one eligibility expression (subscribers.eligibility).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Engine,
    Executable,
    Integer,
    Result,
    String,
    Table,
    and_,
    any_,
    bindparam,
    false,
    func,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from newsletter.core.clock import utcnow
from newsletter.core.models import Delivery, DeliveryStatus, Digest, DigestState, UTCDateTime
from newsletter.core.validation import without_address
from newsletter.subscribers.eligibility import may_be_mailed

log = logging.getLogger("newsletter.delivery")

# Where a delivery can stand, in groups: a final delivery never changes again (but for a
# bounce that comes back later, sent -> bounced); an open one still has work to do.
FINAL_STATUSES = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.BOUNCED,
)
OPEN_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
# What a bounce reported after the fact may turn into bounced.
BOUNCEABLE_STATUSES = (DeliveryStatus.SENT, DeliveryStatus.SENDING)

# How long the ledger keeps trying to reach a database that went away (a restart, a
# failover) before it gives up: a message already accepted must still be marked sent.
RECONNECT_SECONDS = 60.0

_ERROR_LENGTH = 2000

# On a slow relay a group takes a while: a mark waits at most this long for the next
# claim, so that the editor's counts and the bounces that quote a Message-ID see it soon.
MARK_WITHIN_SECONDS = 0.5


class Ledger:
    """Each delivery's claim and outcome, written on one autocommit connection.

    A claim is durable before its message goes out. Deliveries are claimed a few at a time
    (a claim group, settings.delivery_claim_group), and on PostgreSQL the marks of the
    messages just sent travel with the claim of the next group in one statement: one round
    trip and one commit per group instead of two per message. What that costs: a worker
    killed mid-group may have sent up to a group's messages without their marks, and those
    go again (invariant 2's bound, per kill, is the group's size).

    The connection is used by one thread at a time: a claim under way on its own thread
    (claim_soon) has it until its result is in, and any other statement meanwhile is a bug
    (RuntimeError), not a race.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        newsletter_id: int,
        claimant: str,
        async_commit: bool = False,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        self.engine = engine
        self.combined = engine.dialect.name == "postgresql"
        self.async_commit = self.combined and async_commit
        self.reconnect_seconds = reconnect_seconds
        self.connection = self._connect()
        self.newsletter_id = newsletter_id
        self.claimant = claimant
        # Sent, not yet written as sent: written with the next claim, or by flush().
        self._unmarked: list[tuple[int, str]] = []
        self._unmarked_since = 0.0
        # The thread a claim runs on while the batch renders its group (claim_soon), the
        # claim under way there, and that thread's id.
        self._claimer: ThreadPoolExecutor | None = None
        self._claiming: Future[tuple[set[int], float]] | None = None
        self._claim_thread: int | None = None

    def _connect(self) -> Connection:
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if self.async_commit:
            connection.exec_driver_sql("SET synchronous_commit = off")
        return connection

    def _execute(self, statement: Executable, params: dict[str, Any] | None = None) -> Result[Any]:
        """Run one statement; when the database went away, reconnect and run it again.

        Every statement here may run twice safely: a mark is the same mark, a claim also
        matches a delivery this claimant holds, a release or a skip sets the same values.
        Giving up at once would lose the mark of a message the relay has accepted, and the
        delivery would be sent again once its claim went stale.
        """
        claiming = self._claiming
        if (
            claiming is not None
            and not claiming.done()
            and threading.get_ident() != self._claim_thread
        ):
            raise RuntimeError("the ledger's connection is in use by a claim under way")
        give_up = time.monotonic() + self.reconnect_seconds
        delay = 0.1
        while True:
            connecting = self.connection.invalidated or self.connection.closed
            try:
                if connecting:
                    self.connection.close()
                    self.connection = self._connect()
                return self.connection.execute(statement, params)
            except DBAPIError as exc:
                # Only a connection that is gone, or a server not back yet: any other error
                # (a deadlock, a timeout, a bug) is the task's to fail and retry.
                lost = exc.connection_invalidated or (
                    connecting and isinstance(exc, OperationalError)
                )
                if not lost or time.monotonic() + delay > give_up:
                    raise
                log.warning(
                    "database connection lost (%s); trying again in %.1f s",
                    type(exc.orig).__name__,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                if not self.connection.closed:  # a new one is opened on the next try
                    with contextlib.suppress(DBAPIError):
                        self.connection.invalidate()

    def claim(self, delivery_ids: Sequence[int]) -> set[int]:
        """Take these deliveries whose reader may still be mailed (invariant 1, at send
        time); the ones taken. The marks not written yet are written first (with it, on
        PostgreSQL)."""
        now = utcnow()
        params = {
            "delivery_ids": list(delivery_ids),
            "claimant": self.claimant,
            "newsletter_id": self.newsletter_id,
            "now": now,
        }
        if self.combined:
            result = self._execute(_MARK_AND_CLAIM, params | self._marks())
        else:
            self._write_marks(now)
            result = self._execute(_CLAIM_UNLOCKED, params)
        # Forgotten only once written: marks lost with the connection are written again.
        self._unmarked = []
        return set(result.scalars())

    def claim_soon(self, delivery_ids: Sequence[int]) -> Future[tuple[set[int], float]]:
        """claim(), under way: the ones taken, and when (time.monotonic), once it is done.

        On PostgreSQL the claim runs on a thread of its own: its commit waits for the
        database's disk, and the batch renders the group's messages meanwhile. Nothing else
        may use the ledger until the result is in. SQLite's connections stay on the thread
        that made them: there the claim is done before this returns.
        """
        if not self.combined:
            done: Future[tuple[set[int], float]] = Future()
            done.set_result((self.claim(delivery_ids), time.monotonic()))
            return done
        if self._claimer is None:
            self._claimer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="claim")

        def claim() -> tuple[set[int], float]:
            self._claim_thread = threading.get_ident()
            return self.claim(delivery_ids), time.monotonic()

        self._claiming = self._claimer.submit(claim)
        return self._claiming

    def sent(self, delivery_id: int, message_id: str) -> None:
        """Remember the delivery as sent; written with the next claim, or by flush() (at
        once, when the first mark waiting has waited MARK_WITHIN_SECONDS)."""
        if not self._unmarked:
            self._unmarked_since = time.monotonic()
        self._unmarked.append((delivery_id, message_id))
        if time.monotonic() - self._unmarked_since >= MARK_WITHIN_SECONDS:
            self.flush()

    def unmarked_ids(self) -> set[int]:
        """The deliveries sent whose marks are not written yet."""
        return {delivery_id for delivery_id, _ in self._unmarked}

    def flush(self) -> None:
        if self._unmarked:
            self._write_marks(utcnow())
            self._unmarked = []

    def _write_marks(self, now: datetime) -> None:
        if not self._unmarked:
            return
        if self.combined:
            self._execute(_MARK_SENT_MANY, self._marks() | {"now": now})
            return
        # SQLite: one writer, one statement per mark; speed is PostgreSQL's business.
        for delivery_id, message_id in self._unmarked:
            self._execute(
                _MARK_SENT,
                {"previous_id": delivery_id, "previous_message": message_id, "now": now},
            )

    def _marks(self) -> dict[str, list[Any]]:
        return {
            "mark_ids": [delivery_id for delivery_id, _ in self._unmarked],
            "mark_messages": [message_id for _, message_id in self._unmarked],
        }

    def unclaim(self, delivery_ids: Sequence[int]) -> None:
        """Give back claimed deliveries whose message did not go (the batch stopped mid-
        group): queued again, still held by this batch, the attempt not counted."""
        if not delivery_ids:
            return
        self.flush()
        self._execute(
            update(_deliveries)
            .where(
                _c.id.in_(list(delivery_ids)),
                _c.status == DeliveryStatus.SENDING,
                _c.claimed_by == self.claimant,
            )
            .values(status=DeliveryStatus.QUEUED, attempts=_c.attempts - 1, updated_at=utcnow())
        )

    def skip_if_ineligible(self, delivery_id: int) -> None:
        """Skip a delivery whose claim failed, if its reader may really not be mailed.

        A claim also fails when another task holds the delivery (a batch queued twice by
        the sweeper), and that task may give it back: skipping it then would lose it.
        """
        self.flush()
        params = {
            "delivery_id": delivery_id,
            "newsletter_id": self.newsletter_id,
            "claimant": self.claimant,
            "now": utcnow(),
        }
        self._execute(_SKIP_INELIGIBLE, params)

    def release(
        self,
        delivery_id: int,
        error: str,
        *,
        max_attempts: int | None = None,
    ) -> bool:
        """Give a claimed delivery back to the queue; False when its attempts are spent."""
        self.flush()
        attempts = (
            self._execute(select(Delivery.attempts).where(Delivery.id == delivery_id)).scalar() or 0
        )
        spent = max_attempts is not None and attempts >= max_attempts
        self._execute(
            update(Delivery)
            # Only while it is ours: run again after a lost connection, this must not
            # hand back a delivery that another task has claimed since.
            .where(
                Delivery.id == delivery_id,
                Delivery.status == DeliveryStatus.SENDING,
                Delivery.claimed_by == self.claimant,
            )
            .values(
                status=DeliveryStatus.FAILED if spent else DeliveryStatus.QUEUED,
                attempts=attempts,
                last_error=error[:_ERROR_LENGTH],
                claimed_by=None,
            )
        )
        return not spent

    def note_error(self, delivery_id: int, error: str) -> None:
        """Keep why a queued delivery could not be tried (the relay refused the session)."""
        self.flush()
        self._execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.QUEUED)
            .values(last_error=error[:_ERROR_LENGTH])
        )

    def digest_state(self, digest_id: int) -> str | None:
        # The marks may wait: the next claim, or close(), writes them.
        return self._execute(_DIGEST_STATE, {"digest_id": digest_id}).scalar()

    def close(self) -> None:
        if self._claimer is not None:
            self._claimer.shutdown(wait=True)
            self._claimer = None
        try:
            self.flush()
            if self.async_commit and not self.connection.invalidated:
                # The connection goes back to a pool others share.
                self.connection.exec_driver_sql("RESET synchronous_commit")
        finally:
            self.connection.close()


# --- the send loop's statements, built once ------------------------------------------

_deliveries = cast(Table, Delivery.__table__)
_c = _deliveries.c
# Read every few messages of a batch: built once, as the statements below, rather than
# through the ORM each time (which cost a send loop as much as a claim did).
_digests = cast(Table, Digest.__table__)
_DIGEST_STATE = select(_digests.c.state).where(_digests.c.id == bindparam("digest_id"))
_now = bindparam("now", type_=UTCDateTime())
# Queued and held by nobody else (free, or taken by this very batch), or claimed by this
# very task (a claim that went through before the connection was lost, then ran again).
_CLAIMABLE = or_(
    and_(
        _c.status == DeliveryStatus.QUEUED,
        or_(_c.claimed_by.is_(None), _c.claimed_by == bindparam("claimant")),
    ),
    and_(_c.status == DeliveryStatus.SENDING, _c.claimed_by == bindparam("claimant")),
)


def _claim(*, lock: bool) -> Any:
    """Take the deliveries that are claimable and whose reader may still be mailed.

    With `lock` (PostgreSQL) the claim holds a share lock on each reader's subscription
    until it commits: an unsubscribe committing at that very moment either makes the claim
    fail or waits for it, and then sees the delivery in flight (subscribers.store
    .sends_in_flight). SQLite runs one writer at a time: an unsubscribe and a claim cannot
    interleave there.
    """
    if lock:
        # One statement text whatever the group's size: PostgreSQL prepares it once.
        wanted = _c.id == any_(bindparam("delivery_ids", type_=ARRAY(Integer)))
    else:
        wanted = _c.id.in_(bindparam("delivery_ids", expanding=True))
    return (
        update(_deliveries)
        .where(
            wanted,
            _CLAIMABLE,
            may_be_mailed(_c.subscriber_id, bindparam("newsletter_id"), lock=lock),
        )
        .values(
            status=DeliveryStatus.SENDING,
            claimed_by=bindparam("claimant"),
            claimed_at=_now,
            attempts=_c.attempts + 1,
            updated_at=_now,
        )
        .returning(_c.id)
    )


_SENT_VALUES = {
    "status": DeliveryStatus.SENT,
    "sent_at": _now,
    "last_error": None,
    "updated_at": _now,
}
# A bounce reported between the send and its mark (an ESP's webhook) is not undone by it.
_NOT_BOUNCED = _c.status != DeliveryStatus.BOUNCED
_MARK_SENT = (
    update(_deliveries)
    .where(_c.id == bindparam("previous_id"), _NOT_BOUNCED)
    .values(message_id=bindparam("previous_message"), **_SENT_VALUES)
)
# PostgreSQL: the messages just sent, each with its Message-ID, as one table of two arrays.
_marks = (
    func.unnest(
        bindparam("mark_ids", type_=ARRAY(Integer)),
        bindparam("mark_messages", type_=ARRAY(String)),
    )
    .table_valued("id", "message_id")
    .render_derived(name="marks")
)
_MARK_SENT_MANY = (
    update(_deliveries)
    .where(_c.id == _marks.c.id, _NOT_BOUNCED)
    .values(message_id=_marks.c.message_id, **_SENT_VALUES)
)
_CLAIM_UNLOCKED = _claim(lock=False)
# PostgreSQL: the marks of the messages just sent and the claim of the next group in one
# round trip (with no marks, the CTE updates nothing).
_MARK_AND_CLAIM = _claim(lock=True).add_cte(_MARK_SENT_MANY.cte("marked"))
_SKIP_INELIGIBLE = (
    update(_deliveries)
    .where(
        _c.id == bindparam("delivery_id"),
        _CLAIMABLE,
        not_(may_be_mailed(_c.subscriber_id, bindparam("newsletter_id"))),
    )
    .values(
        status=DeliveryStatus.SKIPPED,
        last_error="no longer subscribed at send time",
        updated_at=_now,
    )
)


# --- holding a batch's deliveries ----------------------------------------------------


def among(session: Session, delivery_ids: Sequence[int]) -> ColumnElement[bool]:
    """The deliveries with these ids. On PostgreSQL the ids go as one array: a batch's 500
    ids are not 500 parameters to render, send and parse, in a statement text of their own
    for each count."""
    if session.get_bind().dialect.name == "postgresql":
        return _c.id == any_(bindparam(None, list(delivery_ids), type_=ARRAY(Integer)))
    return _c.id.in_(list(delivery_ids))


def take(
    session: Session, *, digest_id: int, delivery_ids: Sequence[int], claimant: str, task: str
) -> None:
    """Hold the batch's open deliveries for this claimant before sending any of them.

    Held, a delivery is known to be this worker's: if the worker is lost, the sweeper
    gives it back at once (reclaim) instead of waiting for the broker to return the batch
    (an hour on Redis). Free deliveries are taken, and those the same task held on its
    earlier run (a retry, or a redelivery after its process died, perhaps on another
    worker); a delivery another live batch holds is left to it.
    """
    same_task = _c.claimed_by.endswith("|" + task, autoescape=True)
    session.execute(
        update(_deliveries)
        .where(
            among(session, delivery_ids),
            _c.digest_id == digest_id,
            or_(
                and_(
                    _c.status == DeliveryStatus.QUEUED,
                    or_(_c.claimed_by.is_(None), _c.claimed_by == claimant, same_task),
                ),
                and_(_c.status == DeliveryStatus.SENDING, same_task),
            ),
        )
        .values(claimed_by=claimant)
    )


def let_go(session: Session, *, delivery_ids: Sequence[int], claimant: str) -> None:
    """A batch ends: the queued deliveries it still holds are free for whoever comes next
    (its own retry, a resume after a pause, the sweeper)."""
    session.execute(
        update(_deliveries)
        .where(
            among(session, delivery_ids),
            _c.status == DeliveryStatus.QUEUED,
            _c.claimed_by == claimant,
        )
        .values(claimed_by=None, updated_at=_c.updated_at)
    )


def reclaim(
    session: Session, *, instance_ids: Sequence[str], now: datetime
) -> list[tuple[int, int]]:
    """What lost worker instances held — taken or claimed — queued again, free.

    Of a claimed delivery the message may have gone out before the worker was lost: it is
    sent again, the duplicate invariant 2 allows per message in flight (a claim group's at
    most). Returns
    (digest id, delivery id) pairs of the digests still sending, to queue again now.
    """
    if not instance_ids:
        return []
    open_digests = select(Digest.id).where(
        Digest.state.in_([DigestState.SENDING, DigestState.PAUSED])
    )
    rows = session.execute(
        update(_deliveries)
        .where(
            _c.digest_id.in_(open_digests),
            _c.status.in_(OPEN_STATUSES),
            or_(*(_c.claimed_by.startswith(i + "|", autoescape=True) for i in instance_ids)),
        )
        .values(status=DeliveryStatus.QUEUED, claimed_by=None, updated_at=now)
        .returning(_c.digest_id, _c.id)
    ).all()
    sending = set(
        session.scalars(select(Digest.id).where(Digest.state == DigestState.SENDING)).all()
    )
    return sorted(
        (digest_id, delivery_id) for digest_id, delivery_id in rows if digest_id in sending
    )


# --- writes outside the send loop ----------------------------------------------------


def write_deliveries(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert one delivery per (digest, reader), in bulk; rows already there stay as they are.

    Unique (digest, subscriber): a page written twice (a dispatcher that died after its
    commit) adds nobody twice. On PostgreSQL the page goes as one array per column, read
    back by unnest: one statement with a parameter per column, not one per value (a page
    of 1,000 readers was 9,000). Elsewhere, Core's executemany.
    """
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(sqlite_insert(_deliveries).on_conflict_do_nothing(), list(rows))
        return
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    # A value the whole page shares (its digest, its time) goes once, not as an array.
    varying = [name for name, values in columns.items() if values.count(values[0]) < len(rows)]
    varying = varying or ["subscriber_id"]
    page = (
        func.unnest(
            *(bindparam(None, columns[name], type_=ARRAY(_c[name].type)) for name in varying)
        )
        .table_valued(*varying)
        .render_derived(name="page")
    )
    values = [
        page.c[name] if name in varying else bindparam(None, columns[name][0], type_=_c[name].type)
        for name in columns
    ]
    session.execute(
        pg_insert(_deliveries).from_select(list(columns), select(*values)).on_conflict_do_nothing()
    )


def forget_reader(session: Session, *, subscriber_id: int, email_key: str) -> None:
    """Erasure: the reader's deliveries stay (a digest's counts stay true) without their
    address in the errors kept (a relay's reply often quotes it)."""
    rows = session.execute(
        select(Delivery.id, Delivery.last_error).where(
            Delivery.subscriber_id == subscriber_id,
            func.lower(Delivery.last_error).contains(email_key, autoescape=True),
        )
    ).all()
    for delivery_id, error in rows:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(last_error=without_address(error or "", email_key))
            .execution_options(synchronize_session=False)
        )


def skip_queued(session: Session, *, digest_id: int, reason: str) -> None:
    """Skip what a digest has not sent yet (it was cancelled)."""
    session.execute(
        update(Delivery)
        .where(Delivery.digest_id == digest_id, Delivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.SKIPPED, last_error=reason)
    )


def mark_bounced(session: Session, *, delivery_id: int, reply: str) -> int | None:
    """The relay refused the message for good (5xx): the delivery is bounced. Its reader's
    id as it stands now (None: erased since the batch began)."""
    return session.scalar(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(status=DeliveryStatus.BOUNCED, last_error=reply[:_ERROR_LENGTH])
        .returning(Delivery.subscriber_id)
        .execution_options(synchronize_session=False)
    )


def mark_bounced_later(session: Session, *, delivery_id: int) -> None:
    """A bounce came back for a message already accepted: the digest's counts move it from
    sent (or sending) to bounced."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(BOUNCEABLE_STATUSES))
        .values(status=DeliveryStatus.BOUNCED)
        .execution_options(synchronize_session=False)
    )


def requeue_stale(
    session: Session,
    *,
    stale_after_cutoff: datetime,
    now: datetime,
    limit: int,
    keep: Sequence[str] = (),
) -> list[tuple[int, int]]:
    """Deliveries of sending digests nobody has touched since the cutoff, queued again.

    Their task was lost (a broker that restarted without persistence, a worker machine
    gone); queuing them again is safe, because a delivery is sent only by whoever claims
    it. Claims and holds that old are given back first. Returns (digest id, delivery id) pairs, at
    most `limit`, touched now so that the next sweep leaves them to their new task. What
    the worker instances in `keep` hold is theirs, however long it takes them: they are
    online (sending.workers), only slow.
    """
    sending = select(Digest.id).where(Digest.state == DigestState.SENDING)
    not_kept = not_(
        or_(false(), *(Delivery.claimed_by.startswith(i + "|", autoescape=True) for i in keep))
    )
    session.execute(
        update(Delivery)
        .where(
            Delivery.digest_id.in_(sending),
            Delivery.status.in_(OPEN_STATUSES),
            Delivery.claimed_by.is_not(None),
            Delivery.updated_at < stale_after_cutoff,
            not_kept,
        )
        # updated_at kept (not bumped, not left to onupdate): the query below must see these
        # as stale and queue them in this very sweep, not one stale period later.
        .values(status=DeliveryStatus.QUEUED, claimed_by=None, updated_at=Delivery.updated_at)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(
        select(Delivery.digest_id, Delivery.id)
        .where(
            Delivery.digest_id.in_(sending),
            Delivery.status == DeliveryStatus.QUEUED,
            Delivery.updated_at < stale_after_cutoff,
            or_(Delivery.claimed_by.is_(None), not_kept),
        )
        .order_by(Delivery.digest_id, Delivery.id)
        .limit(limit)
    ).all()
    if rows:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_([row.id for row in rows]))
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return [(row.digest_id, row.id) for row in rows]
