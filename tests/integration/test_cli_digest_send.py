"""`newsletter digest send` says whom it will reach and, at a terminal, asks first."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from sqlalchemy import func, select

from newsletter.core import db
from newsletter.core.models import Digest
from tests.conftest import ROOT
from tests.factories import add_reader

REACH = "Will reach 3 readers of Daily digest: en 2, pt-PT 1"


def readers() -> None:
    add_reader("ana@example.com")
    add_reader("bo@example.com")
    add_reader("rita@example.com", language="pt")
    add_reader("pending@example.com", confirmed=False)


def digests() -> int:
    with db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Digest)) or 0)


def send(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    """As a script runs it: stdin is no terminal."""
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "digest", "send", *args],
        cwd=ROOT,
        env={**os.environ, "NEWSLETTER_DATABASE_URL": database_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def send_at_a_terminal(*args: str, answer: str, database_url: str) -> tuple[int, str]:
    """As a person runs it: stdin and stdout a terminal; `answer` typed. Exit code, output."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "digest", "send", *args],
        cwd=ROOT,
        env={**os.environ, "NEWSLETTER_DATABASE_URL": database_url},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    os.write(controller, answer.encode())
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the process is done with it
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    return process.wait(timeout=60), output.decode(errors="replace")


def test_a_script_is_told_the_reach_and_not_asked(clean_db: str) -> None:
    readers()
    result = send(database_url=clean_db)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == REACH
    assert second.startswith("digest ") and ": scheduled for " in second
    assert "Send?" not in result.stdout and digests() == 1


def test_json_output_stays_json_and_the_reach_goes_to_stderr(clean_db: str) -> None:
    readers()
    result = send("--json", "--yes", database_url=clean_db)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "scheduled"
    assert REACH in result.stderr


def test_at_a_terminal_it_asks_and_no_sends_nothing(clean_db: str) -> None:
    readers()
    code, output = send_at_a_terminal(answer="n\n", database_url=clean_db)
    assert code != 0
    assert REACH in output and "Send? [y/N]" in output and "Nothing sent." in output
    assert digests() == 0

    code, output = send_at_a_terminal(answer="y\n", database_url=clean_db)
    assert code == 0, output
    assert "Send? [y/N]" in output and ": scheduled for " in output
    assert digests() == 1


def test_at_a_terminal_yes_skips_the_question(clean_db: str) -> None:
    readers()
    code, output = send_at_a_terminal("--yes", answer="", database_url=clean_db)
    assert code == 0, output
    assert REACH in output and "Send?" not in output and digests() == 1


def test_a_refused_option_says_one_line_and_no_reach(clean_db: str) -> None:
    readers()
    result = send("--at", "next tuesday", database_url=clean_db)
    assert result.returncode != 0 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert digests() == 0
