"""What readers read, counted: per digest, story, language and topic; the week's top stories.

Counts only, whatever the settings: a "reader" here is one copy of a digest (its random
copy key), so a reader who clicks twice counts once among the unique clicks. Machine
clicks and opens (analytics/machines.py) are shown apart and never in a rate.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from newsletter.core import spreadsheets
from newsletter.core.clock import utcnow
from newsletter.core.models import (
    Article,
    Delivery,
    DeliveryStatus,
    DigestVariant,
    LinkEvent,
    LinkEventKind,
)

# The stories of the week: clicks of this many days back.
TOP_STORIES_DAYS = 7


@dataclass(frozen=True)
class StoryClicks:
    article_id: int | None
    title: str
    language: str
    clicks: int  # readers' clicks, all of them
    readers: int  # copies that clicked it at least once
    machine: int  # machines' clicks


@dataclass(frozen=True)
class GroupClicks:
    """One language's, one topic's, or one subject arm's share of a digest."""

    name: str
    delivered: int | None  # None where it cannot be known (a topic: readers get several)
    readers: int

    @property
    def rate(self) -> float | None:
        return self.readers / self.delivered if self.delivered else None


@dataclass
class DigestReport:
    digest_id: int
    delivered: int = 0
    clicks: int = 0
    readers: int = 0  # unique clicks: copies with a reader's click
    machine_clicks: int = 0
    opens: int = 0  # copies opened by a reader (the pixel, when it is on)
    machine_opens: int = 0
    stories: list[StoryClicks] = field(default_factory=list)
    languages: list[GroupClicks] = field(default_factory=list)
    topics: list[GroupClicks] = field(default_factory=list)
    arms: list[GroupClicks] = field(default_factory=list)

    @property
    def click_rate(self) -> float | None:
        return self.readers / self.delivered if self.delivered else None

    @property
    def open_rate(self) -> float | None:
        return self.opens / self.delivered if self.delivered else None


def digest_report(session: Session, *, digest_id: int) -> DigestReport:
    """One digest's report: delivered, clicks, unique clicks and rate; by story, language,
    topic and subject arm; machines' clicks and opens apart."""
    report = DigestReport(digest_id)
    delivered = _delivered(session, digest_id)
    report.delivered = sum(delivered.values())
    reader = LinkEvent.machine.is_(False)
    totals = session.execute(
        select(
            LinkEvent.kind,
            func.count().filter(reader),
            func.count(func.distinct(case((reader, LinkEvent.copy_key)))),
            func.count().filter(LinkEvent.machine.is_(True)),
        )
        .where(LinkEvent.digest_id == digest_id)
        .group_by(LinkEvent.kind)
    ).all()
    for kind, count, copies, machine in totals:
        if kind == LinkEventKind.CLICK:
            report.clicks, report.readers, report.machine_clicks = count, copies, machine
        else:
            report.opens, report.machine_opens = copies, machine
    report.stories = _stories(session, [digest_id])
    clicked = _clicked(session, digest_id)
    report.languages = [
        GroupClicks(language, delivered.get(language, 0), len(clicked.by_language[language]))
        for language in sorted(set(delivered) | set(clicked.by_language))
    ]
    report.topics = sorted(
        (GroupClicks(topic, None, len(copies)) for topic, copies in clicked.by_topic.items()),
        key=lambda group: (-group.readers, group.name),
    )
    arms = _delivered_by_arm(session, digest_id)
    report.arms = [
        GroupClicks(str(arm), arms[arm], len(clicked.by_arm[arm])) for arm in sorted(arms)
    ]
    return report


def arm_readers(session: Session, *, digest_id: int) -> dict[int, int]:
    """A subject test's unique reader clicks, by arm (machines' never count)."""
    rows = session.execute(
        select(LinkEvent.arm, func.count(func.distinct(LinkEvent.copy_key)))
        .where(
            LinkEvent.digest_id == digest_id,
            LinkEvent.kind == LinkEventKind.CLICK,
            LinkEvent.machine.is_(False),
            LinkEvent.arm.is_not(None),
        )
        .group_by(LinkEvent.arm)
    ).all()
    return {int(arm): int(count) for arm, count in rows if arm is not None}


def top_stories(
    session: Session, *, now: datetime | None = None, days: int = TOP_STORIES_DAYS, limit: int = 5
) -> list[StoryClicks]:
    """The stories most readers clicked in the last `days`, across every digest."""
    since = (now or utcnow()) - timedelta(days=days)
    return _stories(session, None, since=since)[:limit]


def clicks_by_language(
    session: Session, *, article_ids: Collection[int], since: datetime, until: datetime
) -> dict[str, dict[int, int]]:
    """Per language, how many copies clicked each of these articles between `since` and
    `until` (readers only): what the click order of a newsletter reads. Counts, never
    whose."""
    if not article_ids:
        return {}
    rows = session.execute(
        select(
            LinkEvent.language,
            LinkEvent.article_id,
            func.count(func.distinct(LinkEvent.copy_key)),
        )
        .where(
            LinkEvent.kind == LinkEventKind.CLICK,
            LinkEvent.machine.is_(False),
            LinkEvent.occurred_at >= since,
            LinkEvent.occurred_at <= until,
            LinkEvent.article_id.in_(article_ids),
        )
        .group_by(LinkEvent.language, LinkEvent.article_id)
    ).all()
    counts: dict[str, dict[int, int]] = defaultdict(dict)
    for language, article, count in rows:
        if article is not None:
            counts[language][int(article)] = int(count)
    return dict(counts)


CSV_HEADER = ("section", "name", "language", "delivered", "readers", "rate", "clicks", "machine")


def report_rows(report: DigestReport) -> Iterator[tuple[object, ...]]:
    """The report as rows for a spreadsheet, under CSV_HEADER."""
    yield (
        "digest",
        str(report.digest_id),
        "",
        report.delivered,
        report.readers,
        _rate(report.click_rate),
        report.clicks,
        report.machine_clicks,
    )
    yield ("opens", "", "", report.delivered, report.opens, _rate(report.open_rate), "", "")
    yield ("machine opens", "", "", "", "", "", "", report.machine_opens)
    for story in report.stories:
        yield (
            "story",
            story.title,
            story.language,
            "",
            story.readers,
            "",
            story.clicks,
            story.machine,
        )
    for section, groups in (("language", report.languages), ("topic", report.topics)):
        for group in groups:
            yield (
                section,
                group.name,
                "",
                _blank(group.delivered),
                group.readers,
                _rate(group.rate),
                "",
                "",
            )
    for group in report.arms:
        yield (
            "subject arm",
            group.name,
            "",
            group.delivered,
            group.readers,
            _rate(group.rate),
            "",
            "",
        )


def report_csv(report: DigestReport) -> str:
    """The report as a CSV file (cells safe to open in a spreadsheet)."""
    buffer = io.StringIO()
    writer = spreadsheets.writer(buffer)
    writer.writerow(CSV_HEADER)
    for row in report_rows(report):
        writer.writerow(row)
    return buffer.getvalue()


def as_dict(report: DigestReport) -> dict[str, Any]:
    """The report as the API gives it."""

    def group(g: GroupClicks) -> dict[str, Any]:
        return {"name": g.name, "delivered": g.delivered, "readers": g.readers, "rate": g.rate}

    return {
        "digest": report.digest_id,
        "delivered": report.delivered,
        "clicks": report.clicks,
        "unique_clicks": report.readers,
        "click_rate": report.click_rate,
        "machine_clicks": report.machine_clicks,
        "opens": report.opens,
        "open_rate": report.open_rate,
        "machine_opens": report.machine_opens,
        "stories": [
            {
                "article": s.article_id,
                "title": s.title,
                "language": s.language,
                "clicks": s.clicks,
                "unique_clicks": s.readers,
                "machine_clicks": s.machine,
            }
            for s in report.stories
        ],
        "languages": [group(g) for g in report.languages],
        "topics": [group(g) for g in report.topics],
        "subject_arms": [group(g) for g in report.arms],
    }


def _rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.4f}"


def _blank(value: int | None) -> object:
    return "" if value is None else value


def _delivered(session: Session, digest_id: int) -> dict[str, int]:
    rows = session.execute(
        select(DigestVariant.language, func.count())
        .select_from(Delivery)
        .join(DigestVariant, DigestVariant.id == Delivery.variant_id)
        .where(Delivery.digest_id == digest_id, Delivery.status == DeliveryStatus.SENT)
        .group_by(DigestVariant.language)
    ).all()
    return {language: int(count) for language, count in rows}


def _delivered_by_arm(session: Session, digest_id: int) -> dict[int, int]:
    rows = session.execute(
        select(Delivery.arm, func.count())
        .where(
            Delivery.digest_id == digest_id,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.arm.is_not(None),
        )
        .group_by(Delivery.arm)
    ).all()
    return {int(arm): int(count) for arm, count in rows if arm is not None}


def _stories(
    session: Session, digest_ids: Sequence[int] | None, *, since: datetime | None = None
) -> list[StoryClicks]:
    reader = LinkEvent.machine.is_(False)
    query = (
        select(
            LinkEvent.article_id,
            Article.title,
            Article.language,
            func.count().filter(reader),
            func.count(func.distinct(case((reader, LinkEvent.copy_key)))),
            func.count().filter(LinkEvent.machine.is_(True)),
        )
        .outerjoin(Article, Article.id == LinkEvent.article_id)
        .where(LinkEvent.kind == LinkEventKind.CLICK)
        .group_by(LinkEvent.article_id, Article.title, Article.language)
    )
    if digest_ids is not None:
        query = query.where(LinkEvent.digest_id.in_(digest_ids))
    if since is not None:
        query = query.where(LinkEvent.occurred_at >= since)
    stories = [
        StoryClicks(article_id, title or "(deleted)", language or "", clicks, readers, machine)
        for article_id, title, language, clicks, readers, machine in session.execute(query)
    ]
    return sorted(stories, key=lambda s: (-s.readers, -s.clicks, s.title))


@dataclass
class _Clicked:
    by_language: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    by_topic: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    by_arm: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))


def _clicked(session: Session, digest_id: int) -> _Clicked:
    """The copies with a reader's click, by language, by the topics of what they clicked,
    and by arm."""
    rows = session.execute(
        select(LinkEvent.copy_key, LinkEvent.language, LinkEvent.arm, Article.topics)
        .outerjoin(Article, Article.id == LinkEvent.article_id)
        .where(
            LinkEvent.digest_id == digest_id,
            LinkEvent.kind == LinkEventKind.CLICK,
            LinkEvent.machine.is_(False),
        )
    ).all()
    clicked = _Clicked()
    for copy_key, language, arm, topics in rows:
        clicked.by_language[language].add(copy_key)
        if arm is not None:
            clicked.by_arm[int(arm)].add(copy_key)
        for topic in topics or ():
            clicked.by_topic[topic].add(copy_key)
    return clicked
