"""Benchmark of a digest's counted story link, against a minimal redirect endpoint.

    python -m bench redirect [--connections 16] [--seconds 15] [--rounds 2]

In one run, against one fresh PostgreSQL database and the Redis buffer: a real
`newsletter web` (uvicorn, one process) with NEWSLETTER_TRACK_CLICKS on, answering
`GET /r/<token>?c=<copy>` for a story of a real digest — the token checked, the story's
address read (from memory after the first), the hit appended to the Redis buffer — and
the same uvicorn setup serving a minimal FastAPI app whose endpoint answers the same
redirect and does nothing else. Load from `wrk` (Debian package wrk), each request with a
copy key of its own; prints requests/s, p50 and p99 latency and the ratio (the target is
0.5 or more), then what the buffer holds and that no row was written on the way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.send import _free_port
from bench.signup import POSTGRES_ADMIN_URL, REDIS_URL, Result, _line, _serve, _wrk

ROOT = Path(__file__).resolve().parent.parent
TARGET = "https://news.example/macau-reopens-the-bridge"
# A copy key of its own for every request, as readers' copies have.
WRK_SCRIPT = """
local counter = 0
function init(args)
  path = args[1]
  prefix = args[2] or "x"
end
function request()
  counter = counter + 1
  return wrk.format("GET", path .. "?c=" .. prefix .. string.format("%08d", counter))
end
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--seconds", type=int, default=15, help="each measurement")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before each")
    parser.add_argument("--rounds", type=int, default=2, help="alternate the servers this often")
    args = parser.parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("bench redirect: wrk is missing (apt-get install -y wrk)")

    token = uuid.uuid4().hex[:8]
    name = f"nl_redirect_{token}"
    prefix = f"bench-redirect-{token}:"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    var = Path(tempfile.mkdtemp(prefix="bench-redirect-"))
    secret = uuid.uuid4().hex * 2
    env = {
        **os.environ,
        "NEWSLETTER_VAR_DIR": str(var),
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_BROKER_URL": REDIS_URL,
        "NEWSLETTER_QUEUE": f"nl-redirect-{token}",
        "NEWSLETTER_REDIS_KEY_PREFIX": prefix,
        "NEWSLETTER_SECRET_KEY": secret,
        "NEWSLETTER_TRACK_CLICKS": "true",
        "PYTHONPATH": str(ROOT),
    }
    script = var / "redirect.lua"
    script.write_text(WRK_SCRIPT)
    servers: list[subprocess.Popen[bytes]] = []
    results: list[Result] = []
    try:
        subprocess.run(
            [sys.executable, "-m", "newsletter", "init", "--no-seeds"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        engine = create_engine(url)
        path = _story_link(engine, secret)
        newsletter_port, minimal_port = _free_port(), _free_port()
        servers.append(
            _serve(
                [sys.executable, "-m", "newsletter", "web", "--port", str(newsletter_port)],
                env,
                var / "newsletter-web.log",
                newsletter_port,
            )
        )
        servers.append(
            _serve(
                [sys.executable, "-c", f"from bench.redirect import serve; serve({minimal_port})"],
                env,
                var / "minimal-web.log",
                minimal_port,
            )
        )
        targets = [
            ("newsletter GET /r/<token>", f"http://127.0.0.1:{newsletter_port}{path}"),
            ("minimal redirect", f"http://127.0.0.1:{minimal_port}{path}"),
        ]
        for round_ in range(args.rounds):
            for what, target in targets:
                base, _, _ = target.partition("?")
                tag = f"r{round_}w{len(results)}"
                route = "/" + base.partition("://")[2].partition("/")[2]
                _wrk_path(wrk, args, script, base, route, tag + "w", args.warmup)
                results.append(_wrk_path(wrk, args, script, base, route, tag, args.seconds, what))
                print(_line(results[-1]), flush=True)
        with Session(engine) as session:
            written = session.scalar(text("SELECT count(*) FROM link_events"))
        engine.dispose()
        buffered = _buffered(f"{prefix}nl:link-hits")
        served = sum(r.requests for r in results if r.what.startswith("newsletter"))
        print(
            f"\nbuffered: {buffered:,} hits in Redis for the story link's requests "
            f"(measured {served:,}, plus warm-ups); link_events rows written: {written}"
        )
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
        _forget(prefix)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(var, ignore_errors=True)
    _print_table(results, args)


def _wrk_path(
    wrk: str,
    args: argparse.Namespace,
    script: Path,
    base: str,
    route: str,
    tag: str,
    seconds: int,
    what: str = "",
) -> Result:
    return _wrk(wrk, args, script, base, route, tag, seconds=seconds, what=what)


def _story_link(engine: object, secret: str) -> str:
    """The path of a story link of a real digest: its newsletter, article and variant."""
    from newsletter.core.models import Article, Digest, DigestState, DigestVariant, Newsletter
    from newsletter.core.tokens import make_link_token

    now = datetime.now(UTC)
    with Session(engine) as session:  # type: ignore[arg-type]
        newsletter = session.scalars(select(Newsletter)).first()
        assert newsletter is not None, "newsletter init made no newsletter"
        article = Article(
            slug="macau-reopens-the-bridge",
            title="Macau reopens the bridge",
            url=TARGET,
            language="en",
            topics=[],
            published_at=now - timedelta(hours=1),
            content_hash=uuid.uuid4().hex,
        )
        digest = Digest(
            newsletter_id=newsletter.id,
            state=DigestState.SENT,
            since=now - timedelta(days=1),
            until=now,
            started_at=now,
        )
        session.add_all([article, digest])
        session.flush()
        variant = DigestVariant(
            digest_id=digest.id, key="bench", language="en", article_ids=[article.id]
        )
        session.add(variant)
        session.commit()
        assert session.scalar(select(func.count()).select_from(Article)) == 1
        return "/r/" + make_link_token(secret, digest.id, variant.id, article.id)


def serve(port: int) -> None:
    """The minimal server: uvicorn started as `newsletter web` starts it, one process."""
    import logging

    import uvicorn

    from newsletter.core.config import get_settings
    from newsletter.core.logs import configure_logging

    configure_logging(get_settings(), level="WARNING")
    logging.getLogger().setLevel(logging.INFO)
    uvicorn.run(
        "bench.redirect:minimal_app", factory=True, host="127.0.0.1", port=port, log_config=None
    )


def minimal_app() -> FastAPI:
    """The same redirect, and nothing else: no token, no lookup, no count."""
    app = FastAPI()

    @app.get("/r/{token}")
    async def minimal(token: str) -> RedirectResponse:
        return RedirectResponse(TARGET, status_code=302)

    return app


def _buffered(key: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.llen(key))
    finally:
        client.close()


def _forget(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\nwrk: {args.threads} thread(s), {args.connections} connections, "
        f"{args.seconds} s each, {args.rounds} round(s); one uvicorn process per server"
    )
    print("| endpoint | requests/s | p50 ms | p99 ms | requests |")
    print("|---|---:|---:|---:|---:|")
    for result in results:
        print(
            f"| {result.what} | {result.requests_per_second:,.0f} | {result.p50_ms:.1f} "
            f"| {result.p99_ms:.1f} | {result.requests:,} |"
        )
    ours = [r.requests_per_second for r in results if r.what.startswith("newsletter")]
    theirs = [r.requests_per_second for r in results if r.what.startswith("minimal")]
    if ours and theirs:
        ratio = (sum(ours) / len(ours)) / (sum(theirs) / len(theirs))
        print(f"story link requests/s / minimal redirect: {ratio:.2f} (target: 0.50 or more)")
