"""Backups as the README says to make them, restored and used; and a move to a new house.

pg_dump of a working database, pg_restore into a scratch one, and the service reads its
readers, suppressions and digests from the copy. `newsletter export` writes what a new
installation imports: there, the readers are subscribed and the suppressed stay suppressed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import make_url

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.digests import lifecycle
from newsletter.subscribers import store, suppressions
from tests.conftest import create_postgres_database, drop_postgres_database, service_missing
from tests.factories import add_reader, run_newsletter


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = run_newsletter(*args, env=env)
    assert done.returncode == 0, f"newsletter {' '.join(args)}: {done.stderr}"
    return done


def environment(database_url: str, var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    settings = get_settings()
    env.update(
        NEWSLETTER_DATABASE_URL=database_url,
        NEWSLETTER_VAR_DIR=str(var),
        # The secret key belongs in the backup too: the suppression list is keyed with it.
        NEWSLETTER_SECRET_KEY=settings.secret_key,
        NEWSLETTER_ADMIN_TOKEN=settings.admin_token,
    )
    return env


@pytest.fixture
def filled(clean_db: str) -> tuple[str, int]:
    """The module's database with readers, a suppression and a draft digest in it: its URL
    and the digest's id."""
    add_reader("ana@example.com", name="Ana", language="pt")
    add_reader("li@example.com", name="Li", language="zh", confirmed=False)
    with db.session_scope() as session:
        suppressions.add(session, email="blocked@example.com", reason="manual", detail="phone")
        digest_id = lifecycle.create_digest(session, newsletter_slug="daily", draft=True).id
    return clean_db, digest_id


def test_a_pg_dump_restores_into_a_database_the_service_runs_on(
    filled: tuple[str, int], tmp_path: Path, postgres_server: str
) -> None:
    database_url, digest_id = filled
    if not database_url.startswith("postgresql"):
        pytest.skip("pg_dump backs up PostgreSQL; SQLite is one file (README, backups)")
    for tool in ("pg_dump", "pg_restore"):
        if not shutil.which(tool):
            service_missing(tool)
    url = make_url(database_url)
    dump = tmp_path / "newsletter.dump"
    libpq = {**os.environ, "PGHOST": url.host or "127.0.0.1", "PGUSER": url.username or ""}
    libpq["PGPORT"] = str(url.port or 5432)
    subprocess.run(
        ["pg_dump", "--format=custom", f"--file={dump}", url.database or ""],
        env=libpq,
        check=True,
        capture_output=True,
        timeout=120,
    )
    scratch = create_postgres_database(postgres_server)
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", f"--dbname={make_url(scratch).database}", str(dump)],
            env=libpq,
            check=True,
            capture_output=True,
            timeout=120,
        )
        env = environment(scratch, tmp_path / "var")
        assert "database ready" in run(env, "init", "--no-seeds").stdout  # already at head
        listed = [
            json.loads(line)
            for line in run(env, "subscribers", "list", "--json").stdout.splitlines()
        ]
        assert {r["email"]: r["status"] for r in listed} == {
            "ana@example.com": "subscribed",
            "li@example.com": "pending",
        }
        assert "blocked@example.com" in run(env, "suppressions", "list").stdout
        shown = json.loads(run(env, "digest", "status", str(digest_id), "--json").stdout)
        assert shown["state"] == "draft"
    finally:
        drop_postgres_database(postgres_server, scratch)


def test_export_moves_the_list_to_a_new_installation(
    filled: tuple[str, int], tmp_path: Path
) -> None:
    old = environment(filled[0], tmp_path / "old-var")
    moved = tmp_path / "move"
    said = run(old, "export", str(moved)).stdout
    assert "wrote 2 subscription(s), 2 reader(s) and 1 suppression(s)" in said
    with (moved / "subscriptions.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["email"], r["newsletter"], r["confirmed"]) for r in rows] == [
        ("ana@example.com", "daily", "true"),
        ("li@example.com", "daily", "false"),
    ]
    # A second export into the same folder would overwrite the first: refused in words.
    again = run_newsletter("export", str(moved), env=old)
    assert again.returncode == 1 and "is not empty" in again.stderr

    # The new house: a fresh SQLite installation with its own secret key.
    new = {k: v for k, v in old.items() if not k.startswith("NEWSLETTER_")}
    new["NEWSLETTER_VAR_DIR"] = str(tmp_path / "new-var")
    run(new, "init", "--no-seeds")
    run(new, "suppressions", "import", str(moved / "suppressions.csv"))
    run(new, "subscribers", "import", str(moved / "subscriptions.csv"))
    listed = [
        json.loads(line) for line in run(new, "subscribers", "list", "--json").stdout.splitlines()
    ]
    assert {r["email"]: r["status"] for r in listed} == {
        "ana@example.com": "subscribed",
        "li@example.com": "pending",
    }
    assert "blocked@example.com" in run(new, "suppressions", "list").stdout
    # The move did not change the old house.
    with db.session_scope() as session:
        assert store.count_subscribers(session) == 2
