"""The `newsletter` command as a person runs it: a real process, its output and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SEED = ROOT / "seeds" / "000_6fc2d16fc29a7e31.txt"


def newsletter(
    *args: str, database_url: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=ROOT,
        env={**os.environ, "NEWSLETTER_DATABASE_URL": database_url},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_every_command(clean_db: str) -> None:
    result = newsletter("--help", database_url=clean_db)
    assert result.returncode == 0
    for command in (
        "up",
        "web",
        "worker",
        "init",
        "articles",
        "subscribers",
        "sink",
        "beat",
        "status",
    ):
        assert f"  {command} " in result.stdout


def test_init_twice_changes_nothing(clean_db: str) -> None:
    first = newsletter("init", database_url=clean_db)
    assert first.returncode == 0, first.stderr
    second = newsletter("init", database_url=clean_db)
    assert second.returncode == 0, second.stderr
    assert "imported" not in second.stdout  # the seed article is there already
    listed = json.loads(newsletter("articles", "list", "--json", database_url=clean_db).stdout)
    assert [a["title"] for a in listed] == [
        "Putin wants greater cooperation between Russia and North Korea"
    ]


def test_articles_import_reports_the_bad_file_and_imports_the_rest(
    clean_db: str, tmp_path: Path
) -> None:
    (tmp_path / "good.md").write_text(
        "---\ntitle: Macau reabre a ponte\nlanguage: pt\ntopics: [macau]\n---\n"
        "A ponte reabriu hoje. Os carros voltaram.\n"
    )
    (tmp_path / "bad.md").write_text("---\ntitle: [unclosed\n---\nBody.\n")
    result = newsletter("articles", "import", str(tmp_path), database_url=clean_db)
    assert result.returncode != 0
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "bad.md" in errors[0]
    listed = json.loads(newsletter("articles", "list", "--json", database_url=clean_db).stdout)
    assert [a["title"] for a in listed] == ["Macau reabre a ponte"]


def test_articles_import_ties_translations_and_refuses_a_bad_story_in_one_line(
    clean_db: str, tmp_path: Path
) -> None:
    (tmp_path / "pt.md").write_text(
        "---\ntitle: Macau reabre a ponte\nlanguage: pt\nstory: macau-bridge\n---\nA ponte.\n"
    )
    (tmp_path / "en.md").write_text(
        "---\ntitle: Macau reopens the bridge\nlanguage: en\nstory: macau-bridge\n---\nIt.\n"
    )
    good = newsletter("articles", "import", str(tmp_path), database_url=clean_db)
    assert good.returncode == 0, good.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zh.md").write_text("---\ntitle: 澳门大桥\nstory: 澳门 大桥\n---\n大桥。\n")
    refused = newsletter("articles", "import", str(bad), database_url=clean_db)
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert "zh.md" in line and "is not a story key" in line
    listed = json.loads(newsletter("articles", "list", "--json", database_url=clean_db).stdout)
    assert sorted((a["language"], a["story"]) for a in listed) == [
        ("en", "macau-bridge"),
        ("pt", "macau-bridge"),
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["subscribers", "add", "nobody@"], "not valid"),
        (["subscribers", "add", "ana@example.com", "--language", "fr"], "language"),
        (["subscribers", "add", "ana@example.com", "--newsletter", "weekly"], "no newsletter"),
        (["subscribers", "add", "ana@example.com", "--name", "A\nB"], "line breaks"),
        (["subscribers", "show", "ghost@example.com"], "no subscriber"),
        (["subscribers", "erase", "ghost@example.com", "--yes"], "no subscriber"),
        (["subscribers", "frobnicate"], "no such command"),
        (["articles", "import", "/no/such/file.txt"], "/no/such/file.txt"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_a_non_zero_exit(
    clean_db: str, args: list[str], words: str
) -> None:
    result = newsletter(*args, database_url=clean_db)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0].lower()
    listed = newsletter("subscribers", "list", "--json", database_url=clean_db)
    assert listed.stdout == ""


def test_add_show_export_and_erase_a_subscriber(clean_db: str, redis_broker: str) -> None:
    added = newsletter(
        "subscribers",
        "add",
        "Ana@Example.com",
        "--name",
        "Ana",
        "--language",
        "pt",
        "--topics",
        "macau,china",
        "--confirmed",
        database_url=clean_db,
    )
    assert added.returncode == 0, added.stderr
    shown = json.loads(
        newsletter("subscribers", "show", "ana@example.com", "--json", database_url=clean_db).stdout
    )
    assert shown["name"] == "Ana" and shown["topics"] == ["macau", "china"]
    assert shown["subscriptions"][0]["status"] == "subscribed"
    assert [e["kind"] for e in shown["events"]] == ["signed_up", "confirmed"]
    exported = json.loads(
        newsletter("subscribers", "export-data", "ana@example.com", database_url=clean_db).stdout
    )
    assert exported == shown
    erased = newsletter("subscribers", "erase", "ana@example.com", "--yes", database_url=clean_db)
    assert erased.returncode == 0, erased.stderr
    again = newsletter("subscribers", "add", "ana@example.com", database_url=clean_db)
    assert again.returncode != 0 and "suppression" in again.stderr


def test_articles_fetch_imports_a_feed_and_names_a_broken_one(
    clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import threading
    from functools import partial

    from tests.conftest import free_port

    port = free_port()
    # The test's feed server is on loopback: the operator's escape hatch lets it be read.
    monkeypatch.setenv("NEWSLETTER_FEED_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("NEWSLETTER_FEED_ALLOWED_PORTS", f"80,443,{port}")
    handler = partial(
        http.server.SimpleHTTPRequestHandler, directory=str(ROOT / "tests" / "data" / "feeds")
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        good = ROOT / "tests" / "data" / "feeds" / "macau-pt.rss"
        result = newsletter(
            "articles",
            "fetch",
            f"http://127.0.0.1:{port}/{good.name}",
            f"http://127.0.0.1:{port}/missing.xml",
            database_url=clean_db,
        )
    finally:
        server.shutdown()
    assert result.returncode != 0
    assert f"{good.name}: imported" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "404" in errors[0]
    listed = json.loads(newsletter("articles", "list", "--json", database_url=clean_db).stdout)
    assert listed


def test_articles_fetch_refuses_a_feed_on_loopback_in_one_line(
    clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import threading
    from functools import partial

    from tests.conftest import free_port

    port = free_port()
    # The port is allowed, so that the address alone is refused.
    monkeypatch.setenv("NEWSLETTER_FEED_ALLOWED_PORTS", f"80,443,{port}")
    handler = partial(
        http.server.SimpleHTTPRequestHandler, directory=str(ROOT / "tests" / "data" / "feeds")
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        loopback = newsletter(
            "articles", "fetch", f"http://localhost:{port}/macau-pt.rss", database_url=clean_db
        )
        other_port = newsletter(
            "articles", "fetch", "http://[::ffff:127.0.0.1]:8080/feed.rss", database_url=clean_db
        )
    finally:
        server.shutdown()
        server.server_close()
    assert loopback.returncode == 1 and other_port.returncode == 1
    for result, words in ((loopback, "loopback"), (other_port, "port 8080 is not allowed")):
        errors = result.stderr.strip().splitlines()
        assert len(errors) == 1 and errors[0].startswith("newsletter: the feed address is refused")
        assert words in errors[0]
    listed = json.loads(newsletter("articles", "list", "--json", database_url=clean_db).stdout)
    assert listed == []


def test_newsletters_are_named_in_each_language(clean_db: str) -> None:
    added = newsletter(
        "newsletters",
        "add",
        "macau",
        "--name",
        "Macau weekly",
        "--name",
        "pt=Macau semanal",
        "--name",
        "zh=澳门周报",
        "--description",
        "The week in Macau",
        "--description",
        "zh=澳门一周",
        database_url=clean_db,
    )
    assert added.returncode == 0, added.stderr
    changed = newsletter(
        "newsletters",
        "set",
        "daily",
        "--name",
        "zh=每日新闻",
        "--name",
        "pt=",
        database_url=clean_db,
    )
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip().startswith("daily: names and descriptions in zh;")
    listed = json.loads(newsletter("newsletters", "list", "--json", database_url=clean_db).stdout)
    by_slug = {row["slug"]: row for row in listed}
    assert by_slug["macau"]["name"] == "Macau weekly"
    assert by_slug["macau"]["translations"] == {
        "pt": {"name": "Macau semanal"},
        "zh": {"name": "澳门周报", "description": "澳门一周"},
    }
    # `newsletter up` gave `daily` its pt and zh names; pt= removed the Portuguese one.
    assert by_slug["daily"]["translations"] == {"zh": {"name": "每日新闻"}}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["set", "daily", "--name", "fr=Résumé"], "take LANG=TEXT"),
        (["set", "daily", "--name", "Plain"], "take LANG=TEXT"),
        (["set", "daily"], "nothing to set"),
        (["set", "nope", "--name", "pt=X"], "There is no newsletter called"),
        (["set", "daily", "--name", "pt=A\nB"], "line breaks"),
        (["add", "x", "--name", "pt=Só"], "give the newsletter's own name"),
        (["add", "x", "--name", "A", "--name", "B"], "twice without a language"),
    ],
)
def test_bad_newsletter_names_are_refused_in_one_line(
    clean_db: str, args: list[str], words: str
) -> None:
    before = newsletter("newsletters", "list", "--json", database_url=clean_db).stdout
    refused = newsletter("newsletters", *args, database_url=clean_db)
    assert refused.returncode != 0 and words in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert newsletter("newsletters", "list", "--json", database_url=clean_db).stdout == before
