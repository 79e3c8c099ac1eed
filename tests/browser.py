"""Headless Chromium for the page tests: Debian's /usr/bin/chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Container, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REQUIRE_SERVICES, ROOT

CHROMIUM = os.environ.get("NEWSLETTER_TEST_CHROMIUM", "/usr/bin/chromium")
# Screenshots the tests take, for a person to look at (not committed: build/ is ignored).
SCREENSHOTS = ROOT / "build" / "screenshots"
# Quiet, offline, no GPU: nothing reaches out of the machine, nothing waits for a display.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# What fails an accessibility check; axe's "moderate" and "minor" findings are advice.
BLOCKING = {"serious", "critical"}
SCHEMES = ("light", "dark")
# The previews' frames are sandboxed without scripts, so axe cannot run inside them (it
# would wait for each frame's answer); the email in them is checked as the digest's web copy.
AXE_OPTIONS = {"resultTypes": ["violations"], "iframes": False}

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium; the test is skipped (failed in CI) when there is none."""
    if not shutil.which(CHROMIUM):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / name


class Audit:
    """axe-core on each page in both colour schemes; what it finds, gathered for one report.

    The pages named in `screenshots` are also saved, in each scheme, as
    build/screenshots/<prefix>-<name>-<scheme>.png for a person to look at.
    """

    def __init__(self, page: Page, *, screenshots: Container[str] = (), prefix: str = "a11y"):
        from axe_playwright_python.sync_playwright import Axe

        self.page = page
        self.axe = Axe()
        self.screenshots = screenshots
        self.prefix = prefix
        self.found: list[str] = []
        self.checked: list[str] = []

    def check(self, name: str) -> None:
        self.page.wait_for_load_state()
        for scheme in SCHEMES:
            self.page.emulate_media(color_scheme=scheme)
            results = self.axe.run(self.page, options=AXE_OPTIONS).response
            for violation in results["violations"]:
                if violation["impact"] not in BLOCKING:
                    continue
                targets = "; ".join(" ".join(node["target"]) for node in violation["nodes"][:6])
                self.found.append(
                    f"{name} ({scheme}): {violation['id']} [{violation['impact']}]"
                    f" {violation['help']} -> {targets}"
                )
            if name in self.screenshots:
                self.page.screenshot(
                    path=screenshot_path(f"{self.prefix}-{name}-{scheme}.png"), full_page=True
                )
        self.page.emulate_media(color_scheme="light")
        self.checked.append(name)

    def report(self) -> str:
        return "axe-core found {} barrier(s):\n{}".format(len(self.found), "\n".join(self.found))
