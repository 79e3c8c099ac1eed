"""Who a send would reach: the readers a newsletter may mail now, counted by language."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.core.i18n import LANGUAGE_TAGS
from newsletter.core.models import Subscriber
from newsletter.subscribers.eligibility import may_be_mailed


@dataclass(frozen=True)
class Reach:
    """How many readers a newsletter's send would reach now, in all and per language."""

    newsletter_id: int
    total: int
    by_language: dict[str, int] = field(default_factory=dict)


def reach(session: Session, *, newsletter_id: int) -> Reach:
    """The readers who may be mailed this newsletter now (invariant 1), by language.

    What an editor is asked to confirm before a send: the count comes from the same
    condition the dispatcher walks the list with, so the two cannot disagree (beyond the
    readers who join or leave in between).
    """
    rows = session.execute(
        select(Subscriber.language, func.count())
        .where(may_be_mailed(Subscriber.id, newsletter_id))
        .group_by(Subscriber.language)
        .order_by(func.count().desc(), Subscriber.language)
    ).all()
    by_language = {language: int(count) for language, count in rows}
    return Reach(newsletter_id, sum(by_language.values()), by_language)


def by_language_in_words(reach: Reach, *, separator: str = " · ") -> str:
    """`pt-PT 300 · en 150 · zh-Hans 58`: the reach per language, by language tag, the
    dashboard's confirmation and the CLI's alike."""
    return separator.join(
        f"{LANGUAGE_TAGS.get(language, language)} {count:,}"
        for language, count in reach.by_language.items()
    )


def reach_line(reach: Reach, newsletter_name: str) -> str:
    """`Will reach 508 readers of Daily digest: pt-PT 300, en 150, zh-Hans 58`."""
    if not reach.total:
        return f"Will reach no reader of {newsletter_name}: nobody may be mailed it now."
    readers = "reader" if reach.total == 1 else "readers"
    return f"Will reach {reach.total:,} {readers} of {newsletter_name}: " + by_language_in_words(
        reach, separator=", "
    )
