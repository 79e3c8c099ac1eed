"""Rows the tests need, made through the service functions (as a reader or editor would)."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.articles.store import ParsedArticle, store_article
from newsletter.core import db
from newsletter.core.config import Settings, get_settings
from newsletter.core.models import Delivery, DeliveryStatus, Digest, DigestState
from newsletter.core.tokens import Purpose, make_confirm_token, make_token
from newsletter.digests import dispatcher, lifecycle, schedules
from newsletter.digests.batch import BatchOutcome, send_batch
from newsletter.digests.dispatcher import DispatchPage
from newsletter.sending.ratelimit import NoLimit
from newsletter.sending.transport import SMTPTransport
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.newsletters import get_by_slug
from tests.conftest import ROOT


def add_reader(email: str, *, confirmed: bool = True, name: str = "", language: str = "en") -> int:
    """A reader of the `daily` newsletter, confirmed unless said otherwise; their id."""
    with db.session_scope() as session:
        outcome = subscribers.subscribe(
            session,
            subscribers.SignupForm(email=email, name=name, language=language),
            source="test",
            confirmed=confirmed,
            default_language="en",
            default_time_zone="Europe/Lisbon",
            confirmation_interval=timedelta(minutes=10),
        )
    assert outcome.subscriber_id is not None
    return outcome.subscriber_id


def link_token(purpose: Purpose, subscriber_id: int) -> str:
    """The token of a reader's link of this purpose, as our emails make it (a confirmation
    link names the reader's newsletters)."""
    key = get_settings().secret_key
    if purpose is not Purpose.CONFIRM:
        return make_token(key, purpose, subscriber_id)
    with db.session_scope() as session:
        reader = subscribers.get_subscriber(session, subscriber_id)
        newsletter_ids = [s.newsletter_id for s in reader.subscriptions]
    return make_confirm_token(key, subscriber_id, newsletter_ids)


def sent_delivery(subscriber_id: int, *, message_id: str | None = None) -> int:
    """A digest delivery to this reader that went out, so that a bounce can come back."""
    now = datetime.now(UTC)
    with db.session_scope() as session:
        digest = Digest(
            newsletter_id=get_by_slug(session, "daily").id,
            state=DigestState.SENT,
            since=now - timedelta(days=1),
            until=now,
        )
        session.add(digest)
        session.flush()
        delivery = Delivery(
            digest_id=digest.id,
            subscriber_id=subscriber_id,
            status=DeliveryStatus.SENT,
            message_id=message_id or f"<d{subscriber_id}.{secrets.token_hex(6)}@plataforma.test>",
            sent_at=now - timedelta(minutes=5),
        )
        session.add(delivery)
        session.flush()
        return delivery.id


def add_article(
    title: str,
    *,
    hours_ago: float = 1,
    language: str = "en",
    topics: Sequence[str] = (),
    body: str = "",
    summary: str = "",
    url: str | None = None,
) -> int:
    """A published article, as an import stores it; its id."""
    with db.session_scope() as session:
        stored, _ = store_article(
            session,
            ParsedArticle(
                title=title,
                body=body or f"{title}. The body.",
                summary=summary or f"{title}.",
                url=url,
                language=language,
                topics=list(topics),
                published_at=datetime.now(UTC) - timedelta(hours=hours_ago),
                source="test",
            ),
        )
        return stored.id


def add_fresh_story() -> int:
    """The story the sending tests mail: five minutes old, in English, about Macau."""
    return add_article(
        "Macau reopens the bridge",
        hours_ago=5 / 60,
        topics=["macau"],
        body="The bridge reopened today. Traffic was light.",
        summary="The bridge reopened today.",
        url="https://news.example/bridge",
    )


def dispatched_daily() -> tuple[int, DispatchPage]:
    """A digest of `daily` created, started and its first page of deliveries written, as
    the beat and the dispatcher would: its id, and the page (what a batch is sent)."""
    settings = get_settings()
    with db.session_scope() as session:
        digest_id = lifecycle.create_digest(session, newsletter_slug="daily").id
    with db.session_scope() as session:
        assert lifecycle.start_due(session) == [digest_id]
    with db.session_scope() as session:
        page = dispatcher.dispatch_page(session, digest_id=digest_id, settings=settings)
    return digest_id, page


def send_page(
    digest_id: int,
    page: DispatchPage,
    *,
    claimant: str,
    relay: str | None = None,
    transport: Callable[[str], SMTPTransport] | None = None,
) -> BatchOutcome:
    """A dispatched page sent in this process, as a worker's send_batch task sends it: on a
    session of its own, with no rate limit, through `relay` (the settings' by default)."""
    settings = get_settings()
    session = db.new_session()
    try:
        return send_batch(
            session,
            digest_id=digest_id,
            delivery_ids=page.queued,
            settings=settings,
            claimant=claimant,
            limiter=NoLimit(),
            relay=relay or settings.smtp_url,
            transport=transport,
        )
    finally:
        session.close()


def dkim_key(folder: Path) -> tuple[Path, bytes]:
    """A fresh 2048-bit RSA key written as PEM into folder, and its public key as DNS holds it
    (base64 of the DER SubjectPublicKeyInfo)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = folder / "dkim.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_file, public


def dkim_settings_and_dns(
    folder: Path, monkeypatch: pytest.MonkeyPatch, *, selector: str, domain: str
) -> tuple[Settings, Callable[..., bytes]]:
    """Settings read from an environment with NEWSLETTER_DKIM_* set to a fresh key, and a
    DNS lookup that knows its public key (for dkim.verify's `dnsfunc`)."""
    key_file, public = dkim_key(folder)
    monkeypatch.setenv("NEWSLETTER_DKIM_KEY", str(key_file))
    monkeypatch.setenv("NEWSLETTER_DKIM_SELECTOR", selector)
    monkeypatch.setenv("NEWSLETTER_DKIM_DOMAIN", domain)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        if name == f"{selector}._domainkey.{domain}.".encode():
            return b"v=DKIM1; k=rsa; p=" + public
        return b""

    return Settings(), dns


def two_schedulers_at_once(now: datetime) -> tuple[list[int], list[int]]:
    """What two schedulers' plan_recurring made when they run at the same moment.

    The first has inserted but not committed when the second looks: the second finds no
    digest, tries the same schedule_key, waits for the first to commit, and its insert
    fails on the unique key inside its savepoint.
    """
    first_planned = threading.Event()
    second: list[list[int]] = []
    errors: list[BaseException] = []

    def second_scheduler() -> None:
        try:
            first_planned.wait(timeout=10)
            with db.session_scope() as session:
                second.append(schedules.plan_recurring(session, now=now))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second_scheduler)
    thread.start()
    with db.session_scope() as session:
        first = schedules.plan_recurring(session, now=now)
        first_planned.set()
        thread.join(timeout=0.5)  # long enough for the second to reach its insert
    thread.join(timeout=30)
    assert errors == [] and len(second) == 1
    return first, second[0]


def run_cli(
    *args: str, database_url: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`newsletter ARGS` as a person runs it, in its own process, stdin not a terminal."""
    return run_newsletter(
        *args, env={**os.environ, "NEWSLETTER_DATABASE_URL": database_url, **(env or {})}
    )


def run_newsletter(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`newsletter ARGS` in its own process with exactly this environment."""
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
