"""The dashboard at phone width (390x844): no page wider than the screen, tables and
charts scrolling inside their cards, and a screenshot for the README."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, screenshot_path
from tests.conftest import ROOT
from tests.embedded import Service, newsletter_cli, running_up

ADMIN_TOKEN = "browser-phone-token-" + uuid.uuid4().hex
PHONE = {"width": 390, "height": 844}
READERS = ("ana.lima@example.com", "wei.chen@example.com", "joao.reis@example.com")
README_SCREENSHOT = ROOT / "docs" / "screenshots" / "editor-phone.png"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_up(
        tmp_path_factory.mktemp("var"),
        NEWSLETTER_ADMIN_TOKEN=ADMIN_TOKEN,
        NEWSLETTER_ADMIN_SIGNIN_DELAY_SECONDS="0.05",
    ) as up:
        for email in READERS:
            name = email.split("@")[0].replace(".", " ").title()
            newsletter_cli(up, "subscribers", "add", email, "--name", name, "--confirmed")
        newsletter_cli(up, "newsletters", "set-schedule", "daily", "0 7 * * 1-5")
        yield up


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="en-GB"
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def test_no_dashboard_page_is_wider_than_a_phone(page: Page, service: Service) -> None:
    digest_id = json.loads(newsletter_cli(service, "digest", "send", "--json"))["id"]
    page.goto(f"{service.base_url}/admin")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_role("region", name="Upcoming sends")).to_contain_text(
        re.compile(r"next run of daily: \d{4}-\d\d-\d\d 07:00 Europe/Lisbon")
    )

    for path in (
        "/admin",
        "/admin/digests",
        f"/admin/digests/{digest_id}",
        "/admin/subscribers",
        "/admin/newsletters",
    ):
        page.goto(f"{service.base_url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is {width} px wide at phone width"

    page.goto(f"{service.base_url}/admin")
    # The charts' text stays readable: drawn no smaller than 9 CSS pixels.
    smallest = page.evaluate(
        "Math.min(...[...document.querySelectorAll('.chart svg text')]"
        ".map(t => t.getBoundingClientRect().height).filter(h => h > 0))"
    )
    assert smallest >= 9, f"chart text {smallest:.1f} px tall"
    page.screenshot(path=screenshot_path("editor-phone.png"), full_page=True)
    README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot_path("editor-phone.png"), README_SCREENSHOT)
