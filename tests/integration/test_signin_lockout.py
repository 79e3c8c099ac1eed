"""The dashboard's sign-in: attempts counted in the database before a token is looked at.

Issue 14, item 7: the slowdown after a wrong token was per attempt and per process, so
guesses sent in parallel (or to another web process) were all evaluated. Here two real
web processes serve one database; guesses go to both at once.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from newsletter.core.config import get_settings
from tests.conftest import ROOT, free_port
from tests.embedded import serving

ATTEMPTS = 5
WINDOW_SECONDS = 4


@pytest.fixture
def web_processes(clean_db: str, redis_broker: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two `newsletter web` processes on the module's database; their base URLs."""
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": clean_db,
        "NEWSLETTER_ADMIN_SIGNIN_ATTEMPTS": str(ATTEMPTS),
        "NEWSLETTER_ADMIN_SIGNIN_WINDOW_SECONDS": str(WINDOW_SECONDS),
        "NEWSLETTER_ADMIN_SIGNIN_DELAY_SECONDS": "0",
    }
    with ExitStack() as stack:
        bases = []
        for number in range(2):
            port = free_port()
            bases.append(
                stack.enter_context(
                    serving(
                        [sys.executable, "-m", "newsletter", "web", "--port", str(port)],
                        cwd=ROOT,
                        env=env,
                        port=port,
                        log_path=tmp_path / f"web{number}.log",
                    )
                )
            )
        yield bases


def login_form(base: str) -> tuple[dict[str, str], str]:
    """The sign-in form's cookie and CSRF token."""
    page = httpx.get(f"{base}/admin/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return dict(page.cookies), match.group(1)


def attempt(base: str, token: str) -> httpx.Response:
    cookies, form_token = login_form(base)
    return httpx.post(
        f"{base}/admin/login",
        data={"token": token, "csrf_token": form_token},
        cookies=cookies,
        timeout=30,
    )


def test_parallel_guesses_on_two_processes_are_refused_past_the_allowance(
    web_processes: list[str],
) -> None:
    guesses = [f"wrong-guess-{n:04d}-0123456789abcdefghij" for n in range(24)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(
            pool.map(lambda n: attempt(web_processes[n % 2], guesses[n]), range(len(guesses)))
        )
    statuses = sorted(a.status_code for a in answers)
    # Only the window's allowance was looked at, across both processes together.
    assert statuses == [401] * ATTEMPTS + [429] * (len(guesses) - ATTEMPTS), statuses
    locked = next(a for a in answers if a.status_code == 429)
    assert "too many sign-in attempts" in locked.text
    assert 1 <= int(locked.headers["retry-after"]) <= WINDOW_SECONDS

    # While locked, the right token is not even looked at.
    right = get_settings().admin_token
    refused = attempt(web_processes[1], right)
    assert refused.status_code == 429 and "newsletter_admin=" not in refused.headers.get(
        "set-cookie", ""
    )
    time.sleep(int(refused.headers["retry-after"]) + 0.2)
    opened = attempt(web_processes[0], right)
    assert opened.status_code == 303 and "newsletter_admin=" in opened.headers["set-cookie"]
    # The right token started the count afresh: a typo after it is a 401, not a 429.
    assert attempt(web_processes[1], "a-typo-0123456789abcdefghijklmnop").status_code == 401
