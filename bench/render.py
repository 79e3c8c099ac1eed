"""Benchmark of composing and rendering a digest: the fast route against the plain ones.

    python -m bench render [--readers 2000] [--articles 10]

Prints µs per message for (a) the service's route — selection, variant rendering once,
and each reader's copy filled into pre-built MIME — (b) the naive route, a fresh
EmailMessage per reader serialised by the email package, and (c) the floor: plain
substitution into one pre-serialised message, all measured in this run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.seed import seed_newsletter


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=2000)
    parser.add_argument("--articles", type=int, default=10)
    args = parser.parse_args(argv)
    var = Path(tempfile.mkdtemp(prefix="bench-render-"))
    os.environ.update(
        NEWSLETTER_VAR_DIR=str(var),
        NEWSLETTER_DATABASE_URL=f"sqlite:///{var / 'bench.db'}",
        NEWSLETTER_FROM_ADDRESS="news@plataforma.test",
        NEWSLETTER_BASE_URL="https://news.plataforma.test",
    )
    from newsletter.core import db
    from newsletter.core.config import get_settings
    from newsletter.core.models import Digest, DigestState, Subscriber
    from newsletter.core.schema import upgrade
    from newsletter.digests import render as digests
    from newsletter.email import render as rendering

    settings = get_settings()
    upgrade(db.get_engine())
    now = datetime.now(UTC)
    with db.session_scope() as session:
        newsletter = seed_newsletter(session, articles=args.articles)
        session.add_all(
            Subscriber(
                email=f"reader{n}@example.com",
                email_key=f"reader{n}@example.com",
                name=f"Leitor Número {n}",
                language="en",
                topics=[],
            )
            for n in range(args.readers)
        )
        digest = Digest(
            newsletter_id=newsletter.id,
            state=DigestState.SENDING,
            since=now - timedelta(days=1),
            until=now,
            started_at=now,
        )
        session.add(digest)
        session.flush()
        readers = list(session.query(Subscriber).order_by(Subscriber.id))

        started = time.perf_counter()
        batch = digests.render_for_readers(
            session, digest=digest, subscribers=readers, settings=settings
        )
        fast = (time.perf_counter() - started) / len(readers)
        sample = next(iter(batch.messages.values()))
        prepared = digests.prepare_variant(
            session,
            newsletter=newsletter,
            selection=digests.composer.Selection("en", tuple(range(1, args.articles + 1))),
            settings=settings,
        )
        recipients = [digests.reader_recipient(r, newsletter, settings) for r in readers]

    count = min(len(recipients), 500)
    started = time.perf_counter()
    for recipient in recipients[:count]:
        rendering.build_reference_message(
            prepared.rendered,
            from_name=settings.publisher_name,
            from_address=settings.from_address,
            headers=prepared.headers,
            recipient=recipient,
            date=now,
        )
    naive = (time.perf_counter() - started) / count

    # The floor: one serialised message, two placeholders replaced per reader.
    template = sample.data.replace(readers[0].email.encode(), b"@@TO@@")
    started = time.perf_counter()
    for recipient in recipients:
        template.replace(b"@@TO@@", recipient.address.encode()).replace(
            b"@@ID@@", recipient.message_id.encode()
        )
    floor = (time.perf_counter() - started) / len(recipients)

    print(
        f"{len(readers)} readers, {args.articles} articles, "
        f"{len(sample.data) / 1024:.1f} KB a message"
    )
    print(f"variants rendered: {batch.variants_rendered}")
    print(f"service route (select + fill, tokens, MIME): {fast * 1e6:8.1f} µs/message")
    print(
        f"naive route (EmailMessage per reader):       {naive * 1e6:8.1f} µs/message"
        f"  ({naive / fast:.1f}x the service route)"
    )
    print(
        f"floor (bytes.replace into one message):      {floor * 1e6:8.1f} µs/message"
        f"  (service route = {fast / floor:.1f}x the floor)"
    )
    print(f"service route ceiling on one core: {1 / fast:,.0f} messages/s")
