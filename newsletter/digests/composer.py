"""The digest composer: which recent articles go to which reader, grouped into variants."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.analytics import reports
from newsletter.articles.store import story_key
from newsletter.core.clock import utcnow
from newsletter.core.models import (
    Article,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestState,
    DigestVariant,
    Newsletter,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletter.subscribers.eligibility import may_be_mailed


@dataclass(frozen=True)
class Reader:
    """What the composer needs to know of one subscriber."""

    subscriber_id: int
    language: str
    topics: frozenset[str]
    already_sent: frozenset[int] = frozenset()
    # The stories (keys) they had in an earlier digest, in whatever language.
    stories_read: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Selection:
    """The articles one reader gets, and the language of the email around them."""

    language: str
    article_ids: tuple[int, ...]

    @cached_property  # asked twice per reader by assign_variants, on every page
    def key(self) -> str:
        raw = f"{self.language}:{','.join(map(str, self.article_ids))}"
        return hashlib.sha256(raw.encode()).hexdigest()


def digest_window(
    session: Session,
    *,
    newsletter_id: int,
    since: datetime | None,
    now: datetime,
    first_window: timedelta,
) -> tuple[datetime, datetime]:
    """(since, until): by default, since the newsletter's last sent digest began."""
    if since is None:
        last = session.scalar(
            select(Digest.until)
            .where(Digest.newsletter_id == newsletter_id, Digest.state == DigestState.SENT)
            .order_by(Digest.until.desc())
            .limit(1)
        )
        since = last or now - first_window
    return since, now


@dataclass(frozen=True)
class Shaping:
    """An editor's say over one digest's stories: some pinned to the top, in this order,
    for every reader; some left out. An article stands for its whole story."""

    pinned: tuple[int, ...] = ()
    excluded: frozenset[int] = frozenset()

    @classmethod
    def of(cls, digest: Digest | None) -> Shaping:
        if digest is None:
            return cls()
        return cls(tuple(digest.pinned or ()), frozenset(digest.excluded or ()))


def candidate_articles(
    session: Session, *, since: datetime, until: datetime, shaping: Shaping = Shaping()
) -> list[Article]:
    """The articles a digest may hold, in its order: the pinned stories first (every
    visible version, wherever it was published), then the visible articles published in
    the window, the editor's priority first, then newest; the excluded stories never."""
    window = list(
        session.scalars(
            select(Article)
            .where(
                Article.published_at > since,
                Article.published_at <= until,
                Article.hidden.is_(False),
            )
            .order_by(Article.priority.desc(), Article.published_at.desc(), Article.id.desc())
        )
    )
    if not shaping.pinned and not shaping.excluded:
        return window
    pinned = _pinned_articles(session, shaping.pinned)
    left_out = {story_key(a) for a in articles_by_id(session, shaping.excluded)}
    first = [a for a in pinned if story_key(a) not in left_out]
    taken = {a.id for a in first}
    return first + [a for a in window if a.id not in taken and story_key(a) not in left_out]


def pinned_story_keys(candidates: Sequence[Article], shaping: Shaping) -> frozenset[str]:
    """The stories of the pinned articles among the candidates."""
    pinned = set(shaping.pinned)
    return frozenset(story_key(a) for a in candidates if a.id in pinned)


def articles_by_id(
    session: Session, article_ids: Sequence[int] | frozenset[int] | set[int]
) -> list[Article]:
    if not article_ids:
        return []
    return list(session.scalars(select(Article).where(Article.id.in_(list(article_ids)))))


def _pinned_articles(session: Session, pinned: Sequence[int]) -> list[Article]:
    """Each pinned article's story, in the editor's order: the article, then its other
    visible versions (a reader gets theirs); hidden ones never."""
    by_id = {a.id: a for a in articles_by_id(session, pinned)}
    stories = {a.story for a in by_id.values() if a.story is not None}
    versions: dict[str, list[Article]] = {}
    if stories:
        for version in session.scalars(
            select(Article)
            .where(Article.story.in_(stories), Article.hidden.is_(False))
            .order_by(Article.priority.desc(), Article.published_at.desc(), Article.id.desc())
        ):
            versions.setdefault(version.story or "", []).append(version)
    ordered: list[Article] = []
    seen: set[int] = set()
    for article_id in pinned:
        article = by_id.get(article_id)
        if article is None or article.hidden:
            continue
        for version in [article, *versions.get(article.story or "", [])]:
            if version.id not in seen and not version.hidden:
                seen.add(version.id)
                ordered.append(version)
    return ordered


# The click order reads readers' clicks of this many days before the digest's window ends.
CLICK_ORDER_DAYS = 7


@dataclass(frozen=True)
class ClickOrder:
    """Per language, how many readers clicked each story lately (counts only): the order
    after the editor's (pins, then priority) for a newsletter that asks for it."""

    clicks: Mapping[str, Mapping[str, int]]  # language → story key → readers who clicked

    def readers(self, language: str, story: str) -> int:
        return self.clicks.get(language, {}).get(story, 0)


def click_order(
    session: Session, newsletter: Newsletter, candidates: Sequence[Article], *, until: datetime
) -> ClickOrder | None:
    """The click order of a digest's candidates, when the newsletter orders by clicks:
    the clicks of the CLICK_ORDER_DAYS before `until` (the digest's window end, so that
    every page and batch of one digest sees the same counts)."""
    if not newsletter.order_by_clicks or not candidates:
        return None
    counts = reports.clicks_by_language(
        session,
        article_ids={a.id for a in candidates},
        since=until - timedelta(days=CLICK_ORDER_DAYS),
        until=until,
    )
    keys = {a.id: story_key(a) for a in candidates}
    by_story: dict[str, dict[str, int]] = {}
    for language, articles in counts.items():
        stories = by_story.setdefault(language, {})
        for article_id, readers in articles.items():
            stories[keys[article_id]] = stories.get(keys[article_id], 0) + readers
    return ClickOrder(by_story)


@dataclass(frozen=True)
class Story:
    """The versions of one story among a digest's candidates, grouped once for all readers."""

    key: str
    article_ids: frozenset[int]
    # A story is on a reader's topics when any of its versions is: translations are tagged
    # apart, and a tag missing on one version must not turn the reader to another language.
    topics: frozenset[str]
    # Per language, its first version in the candidates' order: (position, article id).
    versions: dict[str, tuple[int, int]]
    # Pinned by the editor: every reader gets it, whatever their topics.
    pinned: bool = False
    # The editor's priority (its highest version's).
    priority: int = 0


def group_stories(
    candidates: Sequence[Article], *, pinned: frozenset[str] = frozenset()
) -> list[Story]:
    """The candidates' stories, in the order of their first versions; `pinned`, the keys
    of the stories the editor pinned."""
    grouped: dict[str, list[tuple[int, Article]]] = {}
    for position, article in enumerate(candidates):
        grouped.setdefault(story_key(article), []).append((position, article))
    stories = []
    for key, versions in grouped.items():
        by_language: dict[str, tuple[int, int]] = {}
        for position, article in versions:
            by_language.setdefault(article.language, (position, article.id))
        stories.append(
            Story(
                key=key,
                article_ids=frozenset(article.id for _, article in versions),
                topics=frozenset(t for _, article in versions for t in article.topics or ()),
                versions=by_language,
                pinned=key in pinned,
                priority=max(article.priority or 0 for _, article in versions),
            )
        )
    return stories


def select_articles(
    reader: Reader,
    candidates: Sequence[Article],
    *,
    fallback_language: str,
    cap: int,
    shaping: Shaping = Shaping(),
    order: ClickOrder | None = None,
) -> Selection:
    """One reader's selection from `candidates` (see choose_stories)."""
    stories = group_stories(candidates, pinned=pinned_story_keys(candidates, shaping))
    return choose_stories(
        reader, stories, fallback_language=fallback_language, cap=cap, order=order
    )


def choose_stories(
    reader: Reader,
    stories: Sequence[Story],
    *,
    fallback_language: str,
    cap: int,
    order: ClickOrder | None = None,
) -> Selection:
    """One reader's selection: one version of each story on their topics (all when none),
    and of each story the editor pinned, whatever its topics.

    The version is the one in the reader's language, else the one in the fallback (the
    newsletter's language), else the story is left out. A story the reader had in an
    earlier digest, in any language, is left out whole. The chosen versions keep the
    candidates' order (candidate_articles: the editor's priority, then the newest); with
    a click `order`, the pinned ones first, then by priority, then by how many readers of
    the reader's language clicked the story lately, then the newest.
    """
    chosen: list[tuple[int, int]] = []
    ranks: dict[int, tuple[int, ...]] = {}
    for story in stories:
        if story.key in reader.stories_read or not story.article_ids.isdisjoint(
            reader.already_sent
        ):
            continue
        if reader.topics and not story.pinned and story.topics.isdisjoint(reader.topics):
            continue
        version = story.versions.get(reader.language) or story.versions.get(fallback_language)
        if version is not None:
            chosen.append(version)
            if order is not None:
                position = version[0]
                ranks[position] = (
                    (0, position)
                    if story.pinned
                    else (1, -story.priority, -order.readers(reader.language, story.key), position)
                )
    chosen.sort(key=(lambda v: ranks[v[0]]) if order is not None else None)
    return Selection(reader.language, tuple(article_id for _, article_id in chosen[:cap]))


def compose(
    session: Session,
    digest: Digest,
    readers: Sequence[Reader],
    candidates: Sequence[Article],
    *,
    cap: int,
) -> dict[int, DigestVariant | None]:
    """Each reader's variant of this digest (None: nothing new for them), variants created.

    The one composition the dispatcher and the previews share: each reader's selection
    from the candidates, their history of this newsletter taken into account, grouped
    into the digest's variants.
    """
    newsletter = digest.newsletter
    selections = select_for_readers(
        session,
        readers,
        candidates,
        newsletter_id=newsletter.id,
        fallback_language=newsletter.language,
        cap=cap,
        digest_id=digest.id,
        shaping=Shaping.of(digest),
        order=click_order(session, newsletter, candidates, until=digest.until or utcnow()),
    )
    return assign_variants(session, digest, selections)


def select_for_readers(
    session: Session,
    readers: Sequence[Reader],
    candidates: Sequence[Article],
    *,
    newsletter_id: int,
    fallback_language: str,
    cap: int,
    digest_id: int | None = None,
    shaping: Shaping = Shaping(),
    order: ClickOrder | None = None,
) -> list[tuple[int, Selection]]:
    """Each reader's selection, their history of this newsletter's digests taken into account.

    `digest_id` is the digest being composed: its own deliveries are not history.
    """
    # Once for the page, not once per reader.
    stories = group_stories(candidates, pinned=pinned_story_keys(candidates, shaping))
    return [
        (
            reader.subscriber_id,
            choose_stories(
                reader, stories, fallback_language=fallback_language, cap=cap, order=order
            ),
        )
        for reader in with_history(
            session,
            readers,
            newsletter_id=newsletter_id,
            exclude_digest_id=digest_id,
            candidates=candidates,
        )
    ]


def eligible_readers(
    session: Session, *, newsletter_id: int, after_id: int = 0, limit: int = 500
) -> tuple[list[Reader], int | None]:
    """The next page of readers who may be mailed this newsletter, and the last id scanned.

    Keyset pagination: the caller passes the last id it saw, so a walk over a million
    readers never holds more than one page. The last id is None when nothing was left.
    """
    # The next `limit` subscribed readers of the newsletter by id, then the eligible among
    # them (deliverable, not suppressed): a page may hold fewer readers than `limit`, and
    # each costs the same wherever it falls in the list. Asked in one query, PostgreSQL joined
    # the eligibility's subqueries from the list's first reader on, every page: a million
    # readers' walk read the list half a thousand times over.
    window = (
        select(Subscription.subscriber_id)
        .where(
            Subscription.newsletter_id == newsletter_id,
            Subscription.status == SubscriptionStatus.SUBSCRIBED,
            Subscription.subscriber_id > after_id,
        )
        .order_by(Subscription.subscriber_id)
        .limit(limit)
        .subquery()
    )
    last_id = session.scalar(select(func.max(window.c.subscriber_id)))
    if last_id is None:
        return [], None
    rows = session.execute(
        select(Subscriber.id, Subscriber.language, Subscriber.topics)
        .where(
            Subscriber.id > after_id,
            Subscriber.id <= last_id,
            may_be_mailed(Subscriber.id, newsletter_id),
        )
        .order_by(Subscriber.id)
    ).all()
    readers = [Reader(row.id, row.language, frozenset(row.topics or ())) for row in rows]
    return readers, last_id


def with_history(
    session: Session,
    readers: Sequence[Reader],
    *,
    newsletter_id: int,
    candidates: Sequence[Article],
    exclude_digest_id: int | None = None,
) -> list[Reader]:
    """The readers, each with the articles and the candidates' stories this newsletter
    already sent them (two queries for the whole page of readers, whatever its size)."""
    sent: dict[int, set[int]] = {r.subscriber_id: set() for r in readers}
    earlier = _started_digest_ids(session, newsletter_id, exclude_digest_id) if sent else []
    # The first digest of a list (a fresh import of a million readers) has no history to
    # read: asking anyway cost a scan per page of the very table the send is filling.
    if earlier:
        # By (digest, subscriber), the unique index of deliveries, whatever the planner's
        # statistics say about a table that grows by thousands of rows a second mid-send.
        rows = session.execute(
            select(Delivery.subscriber_id, DigestVariant.article_ids)
            .join(DigestVariant, DigestVariant.id == Delivery.variant_id)
            .where(
                Delivery.digest_id.in_(earlier),
                Delivery.subscriber_id.in_(list(sent)),
                Delivery.status.in_([DeliveryStatus.SENT, DeliveryStatus.BOUNCED]),
            )
        )
        for subscriber_id, article_ids in rows:
            if subscriber_id is not None:
                sent[subscriber_id].update(article_ids or ())
    versions = _story_versions(session, candidates) if earlier else {}
    return [
        Reader(
            r.subscriber_id,
            r.language,
            r.topics,
            frozenset(sent[r.subscriber_id]),
            frozenset(versions[i] for i in sent[r.subscriber_id] if i in versions),
        )
        for r in readers
    ]


def _story_versions(session: Session, candidates: Sequence[Article]) -> dict[int, str]:
    """Every article (id) of the candidates' stories, with its story key.

    Only the candidates' stories matter to a reader's history: the versions of those, by
    the story index, rather than the key of every article a reader ever had.
    """
    stories = {a.story for a in candidates if a.story is not None}
    if not stories:
        return {}
    rows = session.execute(select(Article.id, Article.story).where(Article.story.in_(stories)))
    return {article_id: story for article_id, story in rows if story is not None}


def _started_digest_ids(
    session: Session, newsletter_id: int, exclude_digest_id: int | None
) -> list[int]:
    """This newsletter's digests that may have sent something (started, at least)."""
    query = select(Digest.id).where(
        Digest.newsletter_id == newsletter_id,
        Digest.state.not_in([DigestState.DRAFT, DigestState.SCHEDULED, DigestState.EMPTY]),
    )
    if exclude_digest_id is not None:
        query = query.where(Digest.id != exclude_digest_id)
    return list(session.scalars(query))


def assign_variants(
    session: Session,
    digest: Digest,
    selections: Sequence[tuple[int, Selection]],
) -> dict[int, DigestVariant | None]:
    """Map each subscriber to the digest's variant for their selection, creating variants.

    An empty selection maps to None: that reader has nothing new this time.
    """
    wanted = {selection.key: selection for _, selection in selections if selection.article_ids}
    known = {
        v.key: v
        for v in session.scalars(
            select(DigestVariant).where(
                DigestVariant.digest_id == digest.id, DigestVariant.key.in_(list(wanted))
            )
        )
    }
    for key, selection in wanted.items():
        if key not in known:
            variant = DigestVariant(
                digest_id=digest.id,
                key=key,
                language=selection.language,
                article_ids=list(selection.article_ids),
            )
            session.add(variant)
            known[key] = variant
    session.flush()
    return {
        subscriber_id: known[selection.key] if selection.article_ids else None
        for subscriber_id, selection in selections
    }
