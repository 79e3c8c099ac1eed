"""Digests: compose, render once per variant, and fill in each reader's copy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.analytics import links
from newsletter.articles import store as article_store
from newsletter.core import clock
from newsletter.core.clock import utcnow
from newsletter.core.config import Settings
from newsletter.core.i18n import translations
from newsletter.core.models import (
    Article,
    Digest,
    DigestState,
    DigestVariant,
    Newsletter,
    Subscriber,
)
from newsletter.digests import composer, shaping, waves
from newsletter.email import builder
from newsletter.email.render import (
    MessageTemplate,
    OutgoingMessage,
    Recipient,
    RenderedEmail,
    slot,
)
from newsletter.subscribers import newsletters as newsletter_store
from newsletter.subscribers.store import find_by_email

# A test send's subject starts with this, in every language (the convention editors know).
TEST_MARK = "[TEST]"
# Where a test copy's reader links lead: a page saying they came in a test, and do nothing.
TEST_LINK_PATH = "/test-link"
# The parts of a digest that differ from reader to reader.
READER_SLOTS = ("greeting", "unsubscribe_url", "unsubscribe_mailto", "preferences_url")


class NothingToSend(ValueError):
    """The digest would be empty; the message says why, for the editor."""


@dataclass(frozen=True)
class PreparedVariant:
    """One variant rendered and laid out as MIME, ready to be filled in per reader."""

    selection: composer.Selection
    rendered: RenderedEmail
    template: MessageTemplate
    headers: list[tuple[str, str]]


@dataclass(frozen=True)
class Preview:
    selection: composer.Selection
    message: OutgoingMessage
    subject: str
    prepared: PreparedVariant


def prepare_variant(
    session: Session,
    *,
    newsletter: Newsletter,
    selection: composer.Selection,
    settings: Settings,
    subject: str | None = None,
    view_url: str | None = None,
    web_copy: bool = False,
    now: datetime | None = None,
    time_zone: str | None = None,
    dateline: datetime | None = None,
    intro: str = "",
    test: bool = False,
    tracking: Tracking | None = None,
) -> PreparedVariant:
    """Render one variant: Jinja, CSS inlining and MIME layout happen here, once.

    Its dates are written on the clock of `time_zone`: the newsletter's unless another
    is given (a reader's own, once readers have one). `now` is the instant it is dated.
    `dateline`, a moment already on the readers' clock (a wave's), dates it instead.
    `intro` is the editor's note (Markdown), shown above the stories. A `test` copy is
    marked so in its subject and body, and its links act for nobody. With `tracking`
    (a digest's variant, as sent), its story links and pixel count as the settings say.
    """
    articles = _articles_in_order(session, selection.article_ids)
    if not articles:
        raise NothingToSend("This selection holds no article.")
    language = selection.language
    subject = subject or compose_subject(articles, language)
    if test:
        subject = f"{TEST_MARK} {subject}"
    context = {
        "publisher": settings.publisher_name,
        "newsletter_name": newsletter_store.newsletter_text(newsletter, language).name,
        "subject": subject,
        # The dateline is the day on the readers' clock: Macau's 07:00 is 23:00 UTC the day before.
        "date": dateline or clock.in_zone(now or utcnow(), time_zone or newsletter.time_zone),
        "preheader": articles[0].summary or articles[0].title,
        "articles": [
            {
                "title": a.title,
                "summary": a.summary,
                "url": _story_url(a, settings, tracking),
            }
            for a in articles
        ],
        "pixel_url": _pixel_url(settings, tracking),
        "view_url": view_url,
        "greeting": slot("greeting"),
        "intro_html": shaping.note_html(intro),
        "intro_text": intro,
        "test_send": test,
    }
    if web_copy:
        # What a browser shows: nobody's greeting, nobody's links; and, since a forward
        # reaches new readers, a way to subscribe.
        context |= {
            "greeting": "",
            "unsubscribe_url": "",
            "preferences_url": "",
            "subscribe_url": f"{settings.base_url}/?newsletter={newsletter.slug}",
        }
    if test:
        # The footer as readers see it, but its links lead to a page that says they came
        # in a test; and no List-Unsubscribe, which a mail client might act on.
        inert = f"{settings.base_url}{TEST_LINK_PATH}"
        context |= {"unsubscribe_url": inert, "preferences_url": inert}
    prepared = builder.prepare_email(
        "digest",
        context,
        language=language,
        settings=settings,
        list_id=newsletter.slug,
        unsubscribe=not test,
        newsletter=newsletter,
    )
    return PreparedVariant(selection, prepared.rendered, prepared.template, prepared.headers)


@dataclass(frozen=True)
class Tracking:
    """The digest, variant and subject arm whose counted links a rendering carries."""

    digest_id: int
    variant_id: int
    arm: int | None = None


def _story_url(article: Article, settings: Settings, tracking: Tracking | None) -> str:
    """A story's link: the article itself, or through our counted redirect."""
    if tracking is None or not settings.track_clicks:
        return article_store.reading_url(article, settings.base_url)
    return links.story_link(
        settings,
        digest_id=tracking.digest_id,
        variant_id=tracking.variant_id,
        article_id=article.id,
        arm=tracking.arm,
        copy=slot(links.COPY_SLOT),
    )


def _pixel_url(settings: Settings, tracking: Tracking | None) -> str:
    if tracking is None or not settings.track_opens:
        return ""
    return links.pixel_link(
        settings,
        digest_id=tracking.digest_id,
        variant_id=tracking.variant_id,
        arm=tracking.arm,
        copy=slot(links.COPY_SLOT),
    )


@dataclass
class RenderedBatch:
    """A batch of readers' messages, and how many variants it took to make them."""

    messages: dict[int, OutgoingMessage]  # by subscriber id
    skipped: list[int]  # readers with nothing new this time
    variants_rendered: int


def render_for_readers(
    session: Session,
    *,
    digest: Digest,
    subscribers: Sequence[Subscriber],
    settings: Settings,
    prepared: dict[int, PreparedVariant] | None = None,
    delivery_ids: dict[int, int] | None = None,
) -> RenderedBatch:
    """Each reader's copy of a digest; a variant is rendered once however many share it.

    `prepared` carries rendered variants from one batch to the next (by variant id).
    """
    prepared = {} if prepared is None else prepared
    newsletter = digest.newsletter
    since, until = digest.since, digest.until
    if since is None or until is None:
        raise ValueError("a digest is rendered once its window is set")
    candidates = composer.candidate_articles(
        session, since=since, until=until, shaping=composer.Shaping.of(digest)
    )
    variants = composer.compose(
        session,
        digest,
        [composer.Reader(s.id, s.language, frozenset(s.topics)) for s in subscribers],
        candidates,
        cap=settings.digest_max_articles,
    )
    batch = RenderedBatch(messages={}, skipped=[], variants_rendered=0)
    for subscriber in subscribers:
        variant = variants[subscriber.id]
        if variant is None:
            batch.skipped.append(subscriber.id)
            continue
        if variant.id not in prepared:
            prepared[variant.id] = prepare_digest_variant(session, digest, variant, settings)
            batch.variants_rendered += 1
        delivery_id = (delivery_ids or {}).get(subscriber.id)
        batch.messages[subscriber.id] = prepared[variant.id].template.fill(
            reader_recipient(subscriber, newsletter, settings, delivery_id=delivery_id)
        )
    return batch


def prepare_digest_variant(
    session: Session,
    digest: Digest,
    variant: DigestVariant,
    settings: Settings,
    *,
    web_copy: bool = False,
    article_ids: Sequence[int] | None = None,
    arm: int | None = None,
) -> PreparedVariant:
    """One variant of a digest as its readers get it (or, with `web_copy`, as a browser
    shows it, of `article_ids` when some were taken down): the editor's subject and note
    for its language, dated when the digest started, on the readers' clock for a wave.
    The one rendering the batches, the previews of a batch and the web copies share; in a
    subject test, the copy of one `arm`."""
    return prepare_variant(
        session,
        newsletter=digest.newsletter,
        selection=composer.Selection(
            variant.language, tuple(variant.article_ids if article_ids is None else article_ids)
        ),
        settings=settings,
        subject=shaping.subject_for(digest, variant.language, arm=arm),
        intro=shaping.note_for(digest, variant.language),
        view_url=None if web_copy else view_url(settings, digest.id, variant.id),
        web_copy=web_copy,
        now=digest.started_at or digest.until or digest.created_at,
        dateline=waves.dateline(digest),
        # A browser's copy is nobody's: its links are the articles' own.
        tracking=None if web_copy else Tracking(digest.id, variant.id, arm),
    )


class DigestReader(builder.Reader, Protocol):
    """What a reader's copy of a digest needs of them, beyond any message's."""

    @property
    def language(self) -> str: ...
    @property
    def tracking_refused(self) -> bool: ...


def reader_recipient(
    subscriber: DigestReader,
    newsletter: Newsletter,
    settings: Settings,
    *,
    delivery_id: int | None = None,
) -> Recipient:
    """A reader's own parts of a digest: greeting, links, tokens, envelope sender, and
    the copy key of its counted links."""
    return builder.reader_recipient(
        subscriber,
        newsletter=newsletter,
        settings=settings,
        delivery_id=delivery_id,
        values={
            "greeting": greeting(subscriber.name, subscriber.language),
            links.COPY_SLOT: links.copy_value(
                settings,
                subscriber_id=subscriber.id,
                tracking_refused=bool(subscriber.tracking_refused),
                delivery_id=delivery_id,
            ),
        },
    )


def greeting(name: str, language: str) -> str:
    gettext = translations(language).gettext
    return gettext("Hello %(name)s,") % {"name": name} if name else gettext("Hello,")


def compose_subject(articles: Sequence[Article], language: str) -> str:
    """The lead story's title, and how many more follow it."""
    return lead_subject(articles[0].title, len(articles) - 1, language)


def digest_subject(digest: Digest, language: str, lead_title: str, stories: int) -> str:
    """The subject of a digest's copy in `language`: the editor's, else its lead story's
    title and how many more of its `stories` follow."""
    return shaping.subject_for(digest, language) or lead_subject(lead_title, stories - 1, language)


def lead_subject(lead: str, more: int, language: str) -> str:
    """The lead story's title, and how many more (`more`) follow it."""
    if not more:
        return lead
    ngettext = translations(language).ngettext
    return ngettext("%(title)s — and %(num)d more", "%(title)s — and %(num)d more", more) % {
        "title": lead,
        "num": more,
    }


def variant_subjects(session: Session, digests: Sequence[Digest]) -> dict[int, list[str]]:
    """The subjects each digest went out with: one per distinct subject among its variants
    (the editor's for the variant's language, else its lead story's), in the order its
    variants were made. Two queries for the whole list, and no rendering."""
    if not digests:
        return {}
    variants = session.execute(
        select(DigestVariant.digest_id, DigestVariant.language, DigestVariant.article_ids)
        .where(DigestVariant.digest_id.in_([d.id for d in digests]))
        .order_by(DigestVariant.digest_id, DigestVariant.id)
    ).all()
    leads = {ids[0] for _, _, ids in variants if ids}
    titles = {
        row.id: row.title
        for row in session.execute(select(Article.id, Article.title).where(Article.id.in_(leads)))
    }
    by_id = {d.id: d for d in digests}
    subjects: dict[int, list[str]] = {}
    for digest_id, language, article_ids in variants:
        if not article_ids or article_ids[0] not in titles:
            continue
        subject = digest_subject(
            by_id[digest_id], language, titles[article_ids[0]], len(article_ids)
        )
        found = subjects.setdefault(digest_id, [])
        if subject not in found:
            found.append(subject)
    return subjects


def preview(
    session: Session,
    *,
    newsletter_slug: str,
    settings: Settings,
    subscriber_email: str | None = None,
    since: datetime | None = None,
    subject: str | None = None,
    now: datetime | None = None,
    language: str | None = None,
    digest: Digest | None = None,
    test: bool = False,
) -> Preview:
    """Exactly what one reader (or a reader with no preferences, in `language` or the
    newsletter's) would get if sent now; of `digest`, shaped as its editor shaped it."""
    now = now or utcnow()
    newsletter = newsletter_store.get_by_slug(session, newsletter_slug)
    window_given = since is not None
    subscriber = (
        find_by_email(session, subscriber_email)
        if subscriber_email
        else Subscriber(
            id=0, email="reader@example.com", name="", language=language or newsletter.language
        )
    )
    since, until = composer.digest_window(
        session,
        newsletter_id=newsletter.id,
        since=since,
        now=now,
        first_window=timedelta(hours=settings.digest_first_window_hours),
    )
    shape = composer.Shaping.of(digest)
    candidates = composer.candidate_articles(session, since=since, until=until, shaping=shape)
    if not candidates:
        last_sent = None
        if not window_given:
            last_sent = session.scalar(
                select(Digest.id)
                .where(Digest.newsletter_id == newsletter.id, Digest.state == DigestState.SENT)
                .limit(1)
            )
        raise NothingToSend(
            _nothing_new(newsletter, since, until, since_last_digest=last_sent is not None)
        )
    reader = composer.Reader(subscriber.id, subscriber.language, frozenset())
    if subscriber_email:
        (reader,) = composer.with_history(
            session,
            [composer.Reader(subscriber.id, subscriber.language, frozenset(subscriber.topics))],
            newsletter_id=newsletter.id,
            candidates=candidates,
        )
    selection = composer.select_articles(
        reader,
        candidates,
        fallback_language=newsletter.language,
        cap=settings.digest_max_articles,
        shaping=shape,
        order=composer.click_order(session, newsletter, candidates, until=until),
    )
    if not selection.article_ids:
        raise NothingToSend(
            f"None of the {len(candidates)} recent article(s) matches this reader's topics and "
            "language, or they have all been sent to them already."
        )
    prepared = prepare_variant(
        session,
        newsletter=newsletter,
        selection=selection,
        settings=settings,
        subject=subject or shaping.subject_for(digest, selection.language),
        intro=shaping.note_for(digest, selection.language) if digest is not None else "",
        test=test,
    )
    recipient = (
        builder.inert_recipient(
            subscriber.email,
            settings,
            values={"greeting": greeting(subscriber.name, subscriber.language)},
        )
        if test
        else reader_recipient(subscriber, newsletter, settings)
    )
    message = prepared.template.fill(recipient)
    return Preview(selection, message, prepared.rendered.subject, prepared)


def preview_digest(
    session: Session,
    digest: Digest,
    *,
    settings: Settings,
    subscriber_email: str | None = None,
    language: str | None = None,
    test: bool = False,
) -> Preview:
    """This digest as it stands, as one reader (or a reader with no preferences, in
    `language` or the newsletter's) would get it: the one preview the dashboard, the API,
    the CLI and the test sends (`test`) share. NothingToSend says why there is none."""
    return preview(
        session,
        newsletter_slug=digest.newsletter.slug,
        settings=settings,
        subscriber_email=subscriber_email,
        since=digest.since,
        # A digest already dispatched has its window; one still waiting ends now.
        now=digest.until,
        language=language,
        digest=digest,
        test=test,
    )


def _nothing_new(
    newsletter: Newsletter, since: datetime, until: datetime, *, since_last_digest: bool
) -> str:
    """Why a preview has nothing to show, on the newsletter's clock, and what to do."""
    zone = newsletter.time_zone
    if since_last_digest:
        return (
            f"Nothing new has been published since the last digest of {newsletter.name} "
            f"({clock.local_text(since, zone)}). To preview earlier articles, give the window "
            "a start: --since in the command line, since= in the API."
        )
    return (
        f"No article was published between {clock.local_text(since, zone)} and "
        f"{clock.local_text(until, zone)}: there is nothing to send."
    )


def web_copy(
    session: Session, *, digest_id: int, variant_id: int | None, settings: Settings
) -> str:
    """The HTML of a sent digest as the browser shows it: no reader's links in it."""
    digest = session.get(Digest, digest_id)
    if digest is None:
        raise LookupError(digest_id)
    query = select(DigestVariant).where(DigestVariant.digest_id == digest_id)
    if variant_id is not None:
        query = query.where(DigestVariant.id == variant_id)
    variants = list(session.scalars(query.order_by(DigestVariant.id)))
    if not variants:
        raise LookupError(digest_id)
    # Without a variant named, the one in the newsletter's own language, if there is one.
    variant = next((v for v in variants if v.language == digest.newsletter.language), variants[0])
    # An article taken down (hidden) since the digest went out leaves its public copy too.
    hidden = set(
        session.scalars(
            select(Article.id).where(Article.id.in_(variant.article_ids), Article.hidden.is_(True))
        )
    )
    shown = tuple(i for i in variant.article_ids if i not in hidden)
    try:
        prepared = prepare_digest_variant(
            session, digest, variant, settings, web_copy=True, article_ids=shown
        )
    except NothingToSend:  # every article of it hidden or deleted: no public copy is left
        raise LookupError(digest_id) from None
    return prepared.rendered.html


def view_url(settings: Settings, digest_id: int, variant_id: int) -> str:
    return f"{settings.base_url}/digests/{digest_id}?variant={variant_id}"


def _articles_in_order(session: Session, article_ids: Sequence[int]) -> list[Article]:
    by_id = {a.id: a for a in session.scalars(select(Article).where(Article.id.in_(article_ids)))}
    return [by_id[i] for i in article_ids if i in by_id]
