"""The composer's rules and the digest's rendering, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from sqlalchemy.orm import Session

from newsletter.articles.store import ParsedArticle, store_article
from newsletter.core import db
from newsletter.core.config import Settings, get_settings
from newsletter.core.models import (
    Article,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestState,
    DigestVariant,
    Subscriber,
)
from newsletter.digests import composer
from newsletter.digests import render as digests
from newsletter.email import builder
from newsletter.email import render as rendering
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.newsletters import get_by_slug

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture
def session(clean_db: str) -> Iterator[Session]:
    with db.session_scope() as session:
        yield session


@pytest.fixture
def settings() -> Settings:
    return get_settings()


def article(
    session: Session,
    title: str,
    *,
    hours_ago: float = 1,
    language: str = "en",
    topics: tuple[str, ...] = (),
    priority: int = 0,
    summary: str = "",
) -> Article:
    stored, _ = store_article(
        session,
        ParsedArticle(
            title=title,
            body=f"{title}. The body.",
            summary=summary or f"{title}.",
            url=None,
            language=language,
            topics=list(topics),
            published_at=NOW - timedelta(hours=hours_ago),
            source="test",
        ),
    )
    stored.priority = priority
    session.flush()
    return stored


def reader(
    session: Session,
    email: str,
    *,
    language: str = "en",
    topics: tuple[str, ...] = (),
    name: str = "",
) -> Subscriber:
    outcome = subscribers.subscribe(
        session,
        subscribers.SignupForm(email=email, name=name, language=language, topics=list(topics)),
        source="test",
        confirmed=True,
        default_language="en",
        default_time_zone="Europe/Lisbon",
        confirmation_interval=timedelta(minutes=10),
    )
    assert outcome.subscriber_id is not None
    return subscribers.get_subscriber(session, outcome.subscriber_id)


def select(
    session: Session, who: Subscriber, *, cap: int = 10, since_hours: float = 24
) -> list[str]:
    candidates = composer.candidate_articles(
        session, since=NOW - timedelta(hours=since_hours), until=NOW
    )
    (with_history,) = composer.with_history(
        session,
        [composer.Reader(who.id, who.language, frozenset(who.topics))],
        newsletter_id=get_by_slug(session, "daily").id,
        candidates=candidates,
    )
    selection = composer.select_articles(with_history, candidates, fallback_language="en", cap=cap)
    titles = {a.id: a.title for a in candidates}
    return [titles[i] for i in selection.article_ids]


def digest_for(session: Session, *, since_hours: float = 24, subject: str | None = None) -> Digest:
    digest = Digest(
        newsletter_id=get_by_slug(session, "daily").id,
        state=DigestState.SENDING,
        since=NOW - timedelta(hours=since_hours),
        until=NOW,
        subject=subject,
        started_at=NOW,
    )
    session.add(digest)
    session.flush()
    return digest


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None
    return str(part.get_content())


# --- selection --------------------------------------------------------------------------


def test_priority_then_recency_within_the_window(session: Session) -> None:
    article(session, "Old news", hours_ago=30)
    article(session, "Recent", hours_ago=1)
    article(session, "Earlier", hours_ago=5)
    article(session, "Editor's pick", hours_ago=10, priority=5)
    ana = reader(session, "ana@example.com")
    assert select(session, ana) == ["Editor's pick", "Recent", "Earlier"]


def test_topics_filter_and_no_topics_means_all(session: Session) -> None:
    article(session, "Macau casinos", topics=("macau", "economia"))
    article(session, "Lisbon trams", topics=("lisboa",))
    article(session, "No topic")
    picky = reader(session, "picky@example.com", topics=("macau",))
    everything = reader(session, "all@example.com")
    assert select(session, picky) == ["Macau casinos"]
    assert sorted(select(session, everything)) == ["Lisbon trams", "Macau casinos", "No topic"]


def test_language_falls_back_to_the_newsletters_own(session: Session) -> None:
    article(session, "Notícia em português", language="pt")
    article(session, "English story", language="en", hours_ago=1.5)
    article(session, "Só em português", language="pt", hours_ago=2)
    portuguese = reader(session, "pt@example.com", language="pt")
    chinese = reader(session, "zh@example.com", language="zh")
    # Each article is a story of its own: the English one has no Portuguese version.
    assert select(session, portuguese) == [
        "Notícia em português",
        "English story",
        "Só em português",
    ]
    assert select(session, chinese) == ["English story"]  # no Chinese version: the fallback


def test_the_cap_keeps_the_first_articles(session: Session) -> None:
    for n in range(15):
        article(session, f"Story {n:02d}", hours_ago=n + 1)
    ana = reader(session, "ana@example.com")
    assert select(session, ana, cap=10) == [f"Story {n:02d}" for n in range(10)]


def test_articles_already_sent_to_a_reader_are_not_repeated(session: Session) -> None:
    first = article(session, "Sent yesterday")
    article(session, "New today")
    ana = reader(session, "ana@example.com")
    rui = reader(session, "rui@example.com")
    earlier = digest_for(session)
    variant = DigestVariant(digest_id=earlier.id, key="k", language="en", article_ids=[first.id])
    session.add(variant)
    session.flush()
    session.add(
        Delivery(
            digest_id=earlier.id,
            subscriber_id=ana.id,
            variant_id=variant.id,
            status=DeliveryStatus.SENT,
        )
    )
    session.flush()
    assert select(session, ana) == ["New today"]
    assert sorted(select(session, rui)) == ["New today", "Sent yesterday"]


def test_a_story_had_in_one_language_is_not_offered_in_another(
    session: Session, settings: Settings
) -> None:
    bridge_pt = article(session, "Macau reabre a ponte", language="pt", hours_ago=30)
    bridge_en = article(session, "Macau reopens the bridge", hours_ago=2)
    unrelated = article(session, "Lisbon trams run late", hours_ago=3)
    for version in (bridge_pt, bridge_en):
        version.story = "macau-bridge"
    maria = reader(session, "maria@example.com", language="pt")
    ana = reader(session, "ana@example.com")
    earlier = digest_for(session, since_hours=48)
    variant = DigestVariant(
        digest_id=earlier.id, key="k", language="pt", article_ids=[bridge_pt.id]
    )
    session.add(variant)
    session.flush()
    session.add(
        Delivery(
            digest_id=earlier.id,
            subscriber_id=maria.id,
            variant_id=variant.id,
            status=DeliveryStatus.SENT,
        )
    )
    session.flush()
    assert select(session, maria) == [unrelated.title]
    assert select(session, ana) == [bridge_en.title, unrelated.title]
    # The editor's preview of Maria's next digest says the same.
    preview = digests.preview(
        session,
        newsletter_slug="daily",
        settings=settings,
        subscriber_email=maria.email,
        since=NOW - timedelta(hours=24),
        now=NOW,
    )
    assert preview.selection.article_ids == (unrelated.id,)


def test_history_counts_every_started_digest_but_the_one_being_composed(
    session: Session,
) -> None:
    sent_before = article(session, "Sent by a cancelled digest")
    article(session, "New today")
    ana = reader(session, "ana@example.com")
    newsletter_id = get_by_slug(session, "daily").id
    cancelled = digest_for(session)
    cancelled.state = DigestState.CANCELLED  # cancelled after it had mailed Ana
    current = digest_for(session)
    for digest in (cancelled, current):
        variant = DigestVariant(
            digest_id=digest.id, key="k", language="en", article_ids=[sent_before.id]
        )
        session.add(variant)
        session.flush()
        session.add(
            Delivery(
                digest_id=digest.id,
                subscriber_id=ana.id,
                variant_id=variant.id,
                status=DeliveryStatus.SENT,
            )
        )
    session.flush()
    me = composer.Reader(ana.id, "en", frozenset())

    def history(exclude: int | None) -> frozenset[int]:
        (found,) = composer.with_history(
            session, [me], newsletter_id=newsletter_id, candidates=[], exclude_digest_id=exclude
        )
        return found.already_sent

    assert history(current.id) == {sent_before.id}  # the cancelled digest counts
    cancelled.state = DigestState.DRAFT  # as if it had never started
    session.flush()
    assert history(current.id) == frozenset()  # the current digest's own rows are no history
    assert history(None) == {sent_before.id}


def test_the_default_window_starts_where_the_last_sent_digest_ended(session: Session) -> None:
    newsletter_id = get_by_slug(session, "daily").id
    first_window = timedelta(hours=24)
    since, until = composer.digest_window(
        session, newsletter_id=newsletter_id, since=None, now=NOW, first_window=first_window
    )
    assert (since, until) == (NOW - first_window, NOW)
    sent = digest_for(session, since_hours=48)
    sent.state, sent.until = DigestState.SENT, NOW - timedelta(hours=6)
    session.flush()
    since, _ = composer.digest_window(
        session, newsletter_id=newsletter_id, since=None, now=NOW, first_window=first_window
    )
    assert since == NOW - timedelta(hours=6)
    explicit = NOW - timedelta(days=3)
    assert (
        composer.digest_window(
            session, newsletter_id=newsletter_id, since=explicit, now=NOW, first_window=first_window
        )[0]
        == explicit
    )


def test_an_empty_digest_is_refused_with_the_reason(session: Session, settings: Settings) -> None:
    with pytest.raises(digests.NothingToSend, match="No article was published between"):
        digests.preview(session, newsletter_slug="daily", settings=settings, now=NOW)
    article(session, "Only about Macau", topics=("macau",))
    reader(session, "lisboa@example.com", topics=("lisboa",))
    with pytest.raises(digests.NothingToSend, match="matches this reader's topics"):
        digests.preview(
            session,
            newsletter_slug="daily",
            settings=settings,
            subscriber_email="lisboa@example.com",
            now=NOW,
        )


# --- variants ---------------------------------------------------------------------------


def test_readers_sharing_a_selection_share_one_rendering(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    article(session, "Macau story", topics=("macau",))
    article(session, "Lisbon story", topics=("lisboa",))
    article(session, "História portuguesa", language="pt", topics=("lisboa",))
    readers = (
        [reader(session, f"macau{n}@example.com", topics=("macau",)) for n in range(7)]
        + [reader(session, f"all{n}@example.com") for n in range(6)]
        + [reader(session, f"pt{n}@example.com", language="pt") for n in range(5)]
        + [reader(session, f"none{n}@example.com", topics=("desporto",)) for n in range(2)]
    )
    renders = 0
    original = rendering.render_email

    def counting(*args: object, **kwargs: object) -> rendering.RenderedEmail:
        nonlocal renders
        renders += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builder, "render_email", counting)
    digest = digest_for(session)
    prepared: dict[int, digests.PreparedVariant] = {}
    first = digests.render_for_readers(
        session, digest=digest, subscribers=readers[:10], settings=settings, prepared=prepared
    )
    second = digests.render_for_readers(
        session, digest=digest, subscribers=readers[10:], settings=settings, prepared=prepared
    )
    # 20 readers, 3 variants (macau-only, everything in English, Portuguese), 2 with nothing.
    assert len(first.messages) + len(second.messages) == 18
    assert sorted(first.skipped + second.skipped) == sorted(r.id for r in readers[-2:])
    assert renders == first.variants_rendered + second.variants_rendered == 3
    assert session.query(DigestVariant).filter_by(digest_id=digest.id).count() == 3
    # Each reader's copy is their own: their address, their unsubscribe link.
    tokens = {parse(m.data)["List-Unsubscribe"] for m in first.messages.values()}
    assert len(tokens) == len(first.messages)


# --- the message ------------------------------------------------------------------------


def test_the_digest_message_has_every_header_and_part_it_should(
    session: Session, settings: Settings
) -> None:
    lead = article(session, "Macau reopens the bridge", summary="The bridge reopened today.")
    for n in range(4):
        article(session, f"More news {n}", hours_ago=2 + n)
    ana = reader(session, "ana@example.com", name="Ana Sousa")
    digest = digest_for(session)
    batch = digests.render_for_readers(session, digest=digest, subscribers=[ana], settings=settings)
    sent = batch.messages[ana.id]
    message = parse(sent.data)
    assert message["Subject"] == "Macau reopens the bridge — and 4 more"
    assert message["From"] == "Plataforma <news@plataforma.test>"
    assert message["To"] == "Ana Sousa <ana@example.com>"
    assert message["Message-ID"] == sent.message_id and sent.message_id.endswith(
        "@plataforma.test>"
    )
    assert message["Date"].datetime is not None
    assert message["List-Id"] == "Plataforma <daily.plataforma.test>"
    https, mailto = (part.strip(" <>") for part in message["List-Unsubscribe"].split(","))
    assert https.startswith("http://newsletter.test/unsubscribe/")
    assert mailto.startswith("mailto:unsubscribe+s") and mailto.endswith("@plataforma.test")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    assert sent.envelope_from.startswith("bounces+s") and sent.envelope_from.endswith(
        "@plataforma.test"
    )
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())
    # The raw header is one plain line per URL, never RFC 2047 encoded words.
    raw_header = sent.data.split(b"\r\n\r\n", 1)[0].decode()
    unsubscribe_lines = raw_header.split("List-Unsubscribe: ", 1)[1].split("\r\nList-", 1)[0]
    assert unsubscribe_lines.startswith("<http") and "=?" not in unsubscribe_lines

    html, text = body(message, "html"), body(message, "plain")
    assert "Hello Ana Sousa," in text and "Hello Ana Sousa," in html
    assert "The bridge reopened today." in html.split("<table", 1)[0]  # the preheader
    assert f"http://newsletter.test/articles/{lead.slug}" in text
    assert f'href="http://newsletter.test/articles/{lead.slug}"' in html
    assert https in text and https in html
    assert "/preferences/" in text and "/preferences/" in html
    assert f"http://newsletter.test/digests/{digest.id}?variant=" in html
    assert 'style="' in html  # CSS inlined
    assert "max-width: 600px" in html


def test_hostile_article_text_never_becomes_markup(session: Session, settings: Settings) -> None:
    article(
        session,
        'Breaking "><img src=x onerror=alert(1)>',
        summary="<script>alert('x')</script> & more",
    )
    ana = reader(session, "ana@example.com", name='<b>Ana</b> "quoted"')
    batch = digests.render_for_readers(
        session, digest=digest_for(session), subscribers=[ana], settings=settings
    )
    message = parse(batch.messages[ana.id].data)
    html = body(message, "html")
    assert "<script>" not in html and "<img src=x" not in html and "<b>Ana</b>" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;Ana&lt;/b&gt;" in html
    assert "&gt;&lt;img src=x" in html  # the serializer may leave the quote bare in text
    assert "<script>alert('x')</script>" in body(message, "plain")  # text stays text
    assert message["To"].addresses[0].display_name == '<b>Ana</b> "quoted"'


def reference_message(
    prepared: builder.PreparedEmail, recipient: rendering.Recipient, settings: Settings
) -> EmailMessage:
    """The same message built by the plain route, the email package's, to compare with."""
    return parse(
        rendering.build_reference_message(
            prepared.rendered,
            from_name=settings.publisher_name,
            from_address=settings.from_address,
            headers=prepared.headers,
            recipient=recipient,
            date=NOW,
        ).data
    )


@pytest.mark.parametrize("postmark", [False, True])
def test_through_postmark_each_message_names_its_message_id_as_metadata(
    session: Session, settings: Settings, postmark: bool
) -> None:
    # Postmark's webhooks name a message by Postmark's own id: without our Message-ID in its
    # metadata, a Postmark bounce proves no delivery and acts on nobody (bounces.policy).
    if postmark:
        settings = settings.model_copy(update={"postmark_webhook_user": "postmark"})
    article(session, "Macau — a ponte reabre")
    subscriber = reader(session, "leitora@example.com", language="pt")
    digest = digest_for(session)
    prepared = digests.prepare_variant(
        session,
        newsletter=get_by_slug(session, "daily"),
        selection=composer.Selection("pt", tuple(a.id for a in session.query(Article))),
        settings=settings,
        view_url=f"http://newsletter.test/digests/{digest.id}",
    )
    recipient = digests.reader_recipient(
        subscriber, get_by_slug(session, "daily"), settings, delivery_id=7
    )
    fast = parse(prepared.template.fill(recipient, date=NOW).data)
    slow = reference_message(prepared, recipient, settings)
    for message in (fast, slow):
        assert message["Message-ID"] == recipient.message_id
        expected = recipient.message_id if postmark else None
        assert message["X-PM-Metadata-message-id"] == expected


@pytest.mark.parametrize(
    "name",
    ["", "Ana", "Ana Sousa, Jr.", 'Dr. "Zé"', "Inês Conceição", "陈小明", "x" * 150, "a\\b"],
)
def test_the_fast_route_parses_back_exactly_as_the_email_package_builds(
    session: Session, settings: Settings, name: str
) -> None:
    article(session, "Macau — a ponte reabre", summary="Ponte, ç, ã, 中文 and = signs.")
    article(session, "Second story " + "long " * 40, hours_ago=2)
    subscriber = reader(session, "leitora@example.com", language="pt", name=name)
    digest = digest_for(session)
    newsletter = get_by_slug(session, "daily")
    prepared = digests.prepare_variant(
        session,
        newsletter=newsletter,
        selection=composer.Selection("pt", tuple(a.id for a in session.query(Article))),
        settings=settings,
        view_url=f"http://newsletter.test/digests/{digest.id}",
    )
    recipient = digests.reader_recipient(subscriber, newsletter, settings, delivery_id=77)
    wire = prepared.template.fill(recipient, date=NOW).data
    assert b"\n" not in wire.replace(b"\r\n", b""), "every line ends in CRLF"
    assert max(len(line) for line in wire.split(b"\r\n")) <= 998
    fast = parse(wire)
    slow = reference_message(prepared, recipient, settings)
    assert [(k, str(v)) for k, v in fast.items() if k != "Content-Type"] == [
        (k, str(v)) for k, v in slow.items() if k != "Content-Type"
    ]
    assert fast.get_content_type() == slow.get_content_type()
    for kind in ("plain", "html"):
        assert body(fast, kind) == body(slow, kind)
