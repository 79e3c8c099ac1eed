"""What the benchmarks and drills send: the `daily` newsletter and a set of long stories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from newsletter.core.models import Newsletter

PARAGRAPH = (
    "Macau's government announced today a new plan for the cross-border bridge, which "
    "links the city to Hong Kong and Zhuhai; Portuguese and Chinese officials welcomed it. "
)


def seed_newsletter(session: Session, *, articles: int = 10, source: str = "bench") -> Newsletter:
    """The default newsletter and `articles` fresh stories of about 2 KB, newest first."""
    # Imported here: callers set the service's environment before the first import.
    from newsletter.articles.store import ParsedArticle, store_article
    from newsletter.subscribers import newsletters

    now = datetime.now(UTC)
    newsletter = newsletters.ensure_default_newsletter(
        session, language="en", time_zone="Europe/Lisbon"
    )
    for n in range(articles):
        store_article(
            session,
            ParsedArticle(
                title=f"Story {n}: the bridge, the casinos and the Lusophone summit",
                body=PARAGRAPH * 12,
                summary=PARAGRAPH * 2,
                url=f"https://news.plataforma.test/{n}",
                language="en",
                topics=["macau"],
                published_at=now - timedelta(minutes=n + 1),
                source=source,
            ),
        )
    return newsletter
