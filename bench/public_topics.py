"""Benchmark of the topics the signup and preferences pages offer: read afresh, and kept.

.venv/bin/python -m bench topics --articles 50000

Each database (SQLite in a temporary file, and a PostgreSQL database of its own, dropped
afterwards) gets that many articles, each with one to three of 40 topics, one in fifty
hidden; then public_topics is timed as every page view paid for it before (the cache
emptied before each call) and as it is now (kept for PUBLIC_TOPICS_SECONDS).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from newsletter.articles.store import forget_public_topics, public_topics
from newsletter.core.models import Article
from newsletter.core.schema import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TOPICS = [f"topic-{n:02d}" for n in range(40)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=50_000)
    parser.add_argument("--views", type=int, default=20, help="page views timed, each way")
    parser.add_argument("--admin-url", default=POSTGRES_ADMIN_URL)
    args = parser.parse_args(argv)
    print(f"{args.articles} articles, {args.views} page views each way (median, p95 of each)")
    for name, database in (("sqlite", sqlite_database), ("postgresql", postgres_database)):
        with database(args.admin_url) as engine:
            fill(engine, args.articles)
            with Session(engine) as session:
                afresh = timings(session, args.views, forget=True)
                kept = timings(session, args.views, forget=False)
            print(f"{name:>10}  read afresh: {summary(afresh)}   kept: {summary(kept)}")


def fill(engine: Engine, count: int) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "slug": f"article-{n}",
            "title": f"Article {n}",
            "summary": "",
            "body": "",
            "language": "en",
            "topics": [TOPICS[(n + k * 7) % len(TOPICS)] for k in range(1 + n % 3)],
            "published_at": now,
            "source": "bench",
            "content_hash": secrets.token_hex(32),
            "priority": 0,
            "hidden": n % 50 == 0,
            "created_at": now,
        }
        for n in range(count)
    ]
    with engine.begin() as connection:
        for start in range(0, count, 5000):
            connection.execute(insert(Article), rows[start : start + 5000])


def timings(session: Session, views: int, *, forget: bool) -> list[float]:
    forget_public_topics()
    public_topics(session)  # warm: the first read is the same either way
    seconds = []
    for _ in range(views):
        if forget:
            forget_public_topics()
        started = time.perf_counter()
        topics = public_topics(session)
        seconds.append(time.perf_counter() - started)
        assert len(topics) == len(TOPICS)
    return seconds


def summary(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{statistics.median(ordered) * 1000:8.3f} ms, p95 {p95 * 1000:8.3f} ms"


@contextmanager
def sqlite_database(_: str) -> Iterator[Engine]:
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'topics.db'}")
        upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()


@contextmanager
def postgres_database(admin_url: str) -> Iterator[Engine]:
    name = f"bench_topics_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(make_url(admin_url).set(database=name))
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
