"""The newsletter's stored things: newsletters, subscribers, articles, digests, deliveries."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from newsletter.core.clock import utcnow
from newsletter.core.validation import email_hash


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC time was expected")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # Ids end up in signed tokens, VERP addresses and queued tasks: SQLite must never hand
    # a deleted row's id to a new one (tables that need it say sqlite_autoincrement).
    # Named constraints so that Alembic can alter them, SQLite batch mode included.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
        list[int]: JSON,
    }


class SubscriberStatus(enum.StrEnum):
    """Whether mail can reach a subscriber at all, whatever their subscriptions."""

    ACTIVE = "active"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SubscriptionStatus(enum.StrEnum):
    PENDING = "pending"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class DigestState(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"
    EMPTY = "empty"


class TestSendStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"  # to every recipient it could go to
    PARTLY = "partly"  # to some; the others refused (suppressed) or failed
    REFUSED = "refused"  # to none: every address suppressed
    FAILED = "failed"  # to none: the relay would not take it, or it could not be made


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    BOUNCED = "bounced"


class EventKind(enum.StrEnum):
    SIGNED_UP = "signed_up"
    CONFIRMATION_SENT = "confirmation_sent"
    # A known address signed up again (within the confirmation interval, or subscribed).
    SIGNUP_REPEATED = "signup_repeated"
    CONFIRMED = "confirmed"
    PREFERENCES_CHANGED = "preferences_changed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    BOUNCES_RESET = "bounces_reset"
    LINKS_REVOKED = "links_revoked"
    # A link to their data, or to confirm its erasure, mailed at the reader's request.
    EXPORT_LINK_SENT = "export_link_sent"
    ERASURE_LINK_SENT = "erasure_link_sent"


class Newsletter(Base):
    __tablename__ = "newsletters"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(8), default="en")
    # The name and description in other languages, as the editor gives them:
    # {"pt": {"name": "Resumo diário", "description": "..."}, "zh": {...}}. None or a
    # language missing: the newsletter's own (subscribers.newsletters.newsletter_text).
    translations: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    schedule_cron: Mapped[str | None] = mapped_column(String(100))
    time_zone: Mapped[str] = mapped_column(String(64), default="Europe/Lisbon")
    # The schedule is read on each reader's own clock (07:00 in Lisbon, in Macau, ...),
    # sent in waves, rather than once on the newsletter's clock.
    # Who its emails say they are from (the address stays NEWSLETTER_FROM_ADDRESS, which
    # DKIM signs), and where replies go; None: the publisher's name, no Reply-To.
    from_name: Mapped[str | None] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    # Each reader's stories ordered by the editor's priority, then by what readers of the
    # same language clicked most lately (counts only): off unless the editor turns it on.
    order_by_clicks: Mapped[bool] = mapped_column(default=False, server_default=false())
    schedule_in_reader_zones: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    subscriptions: Mapped[list[Subscription]] = relationship(back_populates="newsletter")


def _hash_of_email_key(context: DefaultExecutionContext) -> str:
    # SQLAlchemy leaves this method unannotated.
    parameters = context.get_current_parameters()  # type: ignore[no-untyped-call]
    return email_hash(parameters["email_key"])


class Subscriber(Base):
    __tablename__ = "subscribers"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    # The address as the reader typed it (normalised by email-validator) ...
    email: Mapped[str] = mapped_column(String(320))
    # ... and lower-cased, so that one reader is one row however they capitalise it.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    # ... and its hash, as the suppression list keeps it: whether a reader is suppressed is
    # then a join on an index, in the very statement that claims their delivery. Filled
    # from email_key on every insert, ORM or Core, one row or many.
    email_hash: Mapped[str] = mapped_column(String(64), index=True, default=_hash_of_email_key)
    name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(8), default="en")
    time_zone: Mapped[str] = mapped_column(String(64), default="Europe/Lisbon")
    topics: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default=SubscriberStatus.ACTIVE)
    soft_bounce_count: Mapped[int] = mapped_column(Integer, default=0)
    # Carried in the reader's preferences links (and their data links): raised, it makes
    # every link mailed before worthless (core.tokens, subscribers.store.revoke_links).
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The reader said no to per-reader records of their clicks and opens (preferences
    # page); only read when the publisher keeps such records (NEWSLETTER_TRACK_READERS).
    tracking_refused: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )
    events: Mapped[list[SubscriberEvent]] = relationship(
        back_populates="subscriber",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="SubscriberEvent.id",
    )


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("subscriber_id", "newsletter_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    confirmation_sent_at: Mapped[datetime | None]
    consent_source: Mapped[str] = mapped_column(String(32), default="")
    consent_ip: Mapped[str | None] = mapped_column(String(45))

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    newsletter: Mapped[Newsletter] = relationship(back_populates="subscriptions")


class Article(Base):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    summary: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str | None] = mapped_column(String(2000))
    language: Mapped[str] = mapped_column(String(8), default="en")
    topics: Mapped[list[str]] = mapped_column(default=list)
    published_at: Mapped[datetime] = mapped_column(index=True)
    source: Mapped[str] = mapped_column(String(500), default="")
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    hidden: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Translations of one story share this key; None: the article is a story of its own
    # (articles.store.story_key says which key that is).
    story: Mapped[str | None] = mapped_column(String(100), index=True)


class Digest(Base):
    __tablename__ = "digests"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id"))
    state: Mapped[str] = mapped_column(String(16), default=DigestState.DRAFT, index=True)
    subject: Mapped[str | None] = mapped_column(String(500))
    since: Mapped[datetime | None]
    until: Mapped[datetime | None]
    scheduled_for: Mapped[datetime | None]
    note: Mapped[str] = mapped_column(Text, default="")
    # The state a paused digest goes back to when resumed (scheduled or sending).
    paused_from: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # A recurring digest's "<newsletter id>@<due time>": unique, so that two schedulers
    # running by mistake still make one digest per due time.
    schedule_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    # The dispatcher's place in the walk over readers (the last subscriber id done), so a
    # dispatch cut short goes on where it stopped. The database default is migration
    # 0004's, which gave the digests of that day a cursor.
    dispatch_cursor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dispatched_at: Mapped[datetime | None]
    # A wave of a local-time send: the readers' wall-clock time ("07:00") and calendar
    # day at `scheduled_for`; only readers whose zone puts that instant there get it.
    local_time: Mapped[str | None] = mapped_column(String(5))
    local_day: Mapped[date | None]
    # The editor's shaping of this one digest (digests/shaping.py): a note above the
    # stories and a subject, each per language ({"pt": ...}); the articles pinned to the
    # top, in the editor's order, and those left out (each stands for its whole story).
    intro: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    subjects: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    pinned: Mapped[list[int] | None] = mapped_column(default=list)
    excluded: Mapped[list[int] | None] = mapped_column(default=list)
    # A subject test (digests/subject_test.py): two subjects, the sample, the wait, and
    # once decided, the winner and how. None: no test.
    subject_test: Mapped[dict[str, Any] | None] = mapped_column(default=None)

    newsletter: Mapped[Newsletter] = relationship()


class DigestVariant(Base):
    """One distinct selection of a digest (language and articles), shared by many readers.

    A digest is rendered once per variant, not once per reader.
    """

    __tablename__ = "digest_variants"
    __table_args__ = (UniqueConstraint("digest_id", "key"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"))
    # sha256 of language and article ids: how a batch finds the variant it shares.
    key: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    article_ids: Mapped[list[int]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("digest_id", "subscriber_id"),
        Index("ix_deliveries_digest_status", "digest_id", "status"),
        # Only rows sent: every non-HOT update writes an entry into each index, and a
        # delivery is inserted, held and claimed before it has either value.
        *(
            Index(
                f"ix_deliveries_{column}",
                column,
                postgresql_where=text(f"{column} IS NOT NULL"),
                sqlite_where=text(f"{column} IS NOT NULL"),
            )
            for column in ("message_id", "sent_at")
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"))
    # Kept (as NULL) when a subscriber is erased, so that a digest's counts stay true.
    # Indexed: the composer reads each reader's history of deliveries.
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    # Which rendering of the digest this reader gets (and so which articles). Not indexed:
    # nothing looks deliveries up by variant, and every index on this table is written
    # again by each claim and mark of the send (0022_lighter_deliveries).
    variant_id: Mapped[int | None] = mapped_column(
        ForeignKey("digest_variants.id", ondelete="SET NULL")
    )
    # In a subject test, the subject this reader's copy had (0 or 1); None outside one.
    arm: Mapped[int | None] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Who holds the delivery: "<worker instance>|<task id>" (sending.workers.claimant). A
    # queued delivery may be held too, taken by the batch that will send it, so that the
    # sweeper knows whose it is when that worker is lost. Its own re-run may take it over.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    # Indexed where set (see __table_args__): a bounce that quotes the original Message-ID
    # finds its delivery by it.
    message_id: Mapped[str | None] = mapped_column(String(500))
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None]
    # Indexed where set: the dashboard counts what was sent per hour and per day.
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TestSend(Base):
    """A digest sent as it stands to the editor's own addresses, marked [TEST]: recorded
    here, and never a delivery (no reader's history, no counts, no metrics)."""

    __tablename__ = "test_sends"
    __test__ = False  # a model, not a test class, whatever pytest makes of its name

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    # None: the newsletter's next digest as it would go now (no digest made yet).
    digest_id: Mapped[int | None] = mapped_column(
        ForeignKey("digests.id", ondelete="CASCADE"), index=True
    )
    # [{"email": …, "outcome": "queued|sent|refused|failed", "detail": …}]
    recipients: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Which copies: one language's, every language's (None), or a reader's (masked address).
    language: Mapped[str | None] = mapped_column(String(8))
    as_reader: Mapped[str | None] = mapped_column(String(320))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    subjects: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=TestSendStatus.QUEUED)
    detail: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Suppression(Base):
    """An address that is never mailed: bounced, complained, erased, or added by an operator."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The lower-cased address's keyed hash (validation.email_hash): all that remains of an
    # erased reader, and nothing anyone without the secret key can test a guess against.
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SubscriberEvent(Base):
    __tablename__ = "subscriber_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    newsletter_id: Mapped[int | None] = mapped_column(
        ForeignKey("newsletters.id", ondelete="SET NULL")
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    subscriber: Mapped[Subscriber] = relationship(back_populates="events")


class LinkEventKind(enum.StrEnum):
    CLICK = "click"
    OPEN = "open"


class LinkEvent(Base):
    """A click on a digest's story, or an open, as analytics/recording.py wrote it from the
    buffer: by a reader, or by a machine (a link scanner, an image proxy) and why."""

    __tablename__ = "link_events"
    __table_args__ = (
        Index("ix_link_events_digest_kind", "digest_id", "kind"),
        Index("ix_link_events_article_at", "article_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    digest_id: Mapped[int] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"))
    variant_id: Mapped[int | None] = mapped_column(
        ForeignKey("digest_variants.id", ondelete="SET NULL")
    )
    article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id", ondelete="SET NULL"))
    # The variant's language, kept here: the reports and the click order group by it.
    language: Mapped[str] = mapped_column(String(8))
    arm: Mapped[int | None] = mapped_column(SmallInteger)
    # One copy of the digest: a random key in its links, stored nowhere else (clicks of one
    # copy counted once); for a reader who allowed records, their delivery's.
    copy_key: Mapped[str] = mapped_column(String(40))
    # Only with NEWSLETTER_TRACK_READERS and the reader's consent; erased with the reader.
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    machine: Mapped[bool] = mapped_column(default=False)
    # Why it counts as a machine's: "scanner", "head", "burst", "proxy", "early".
    reason: Mapped[str | None] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(index=True)


class Feed(Base):
    """An RSS or Atom feed we import from, with what its server said when last asked."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    # The validators the server gave, sent back as If-None-Match / If-Modified-Since.
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    last_fetched_at: Mapped[datetime | None]
    # "imported", "not-modified" or "failed"
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BounceKind(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


class BounceEvent(Base):
    """One bounce or complaint as it came back, from whichever door, with its raw source."""

    __tablename__ = "bounce_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(16))
    # smtp (the relay's reply while sending), mail (a DSN or ARF by mail), ses, mailgun, ...
    source: Mapped[str] = mapped_column(String(32))
    # The provider's id for the event: the same event delivered twice counts once.
    event_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    recipient: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str | None] = mapped_column(String(16))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    # Kept for NEWSLETTER_BOUNCE_RAW_DAYS, then cleared (it may hold personal data); only
    # for verified events, truncated.
    raw: Mapped[str | None] = mapped_column(Text)
    # Whether the report proved which delivery it is about (a VERP token of ours, or the
    # Message-ID of a delivery sent to that address): only verified events act on a reader;
    # the others are kept for the operator to see and change nothing.
    verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WebhookToken(Base):
    """A provider's one-time signature token already taken, shared by every web process.

    Mailgun signs only a timestamp and a token: the unique key refuses a replay whichever
    process (or restart) it reaches; rows older than the freshness window are purged.
    """

    __tablename__ = "webhook_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    token: Mapped[str] = mapped_column(String(128))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    __table_args__ = (UniqueConstraint("provider", "token"),)


class AdminSession(Base):
    """One signed-in admin browser: its cookie names this row; signing out deletes it."""

    __tablename__ = "admin_sessions"

    # A random id; the cookie carries it signed, and only its sha256 is kept here.
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    # Which admin token signed in: a new token ends every session of the old one.
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SignInAttempts(Base):
    """Sign-in attempts at the dashboard from one client address in its current window.

    Shared by every web process through the database: counted before a token is looked
    at, so that guesses sent in parallel are refused once the window's allowance is spent.
    """

    __tablename__ = "admin_signin_attempts"

    # A keyed hash of the client's address: no address is kept.
    client_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime]


class Worker(Base):
    """One start of one worker process group: its heartbeat, read by everyone who asks
    whether workers are online, and by the sweeper to find the work of a lost one."""

    __tablename__ = "workers"

    # Random, new at each start: a worker started again under the same name is another
    # instance, and what the old one held is still found lost.
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    # Celery's node name (`worker1@host`), the machine's name and the main process.
    name: Mapped[str] = mapped_column(String(200))
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer, default=0)
    # Tasks running at the last heartbeat, and run since the start.
    active: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # A clean stop; a lost worker just falls silent.
    stopped_at: Mapped[datetime | None]
    # When the sweeper gave back what it held (once: it is not looked at again).
    reclaimed_at: Mapped[datetime | None]
