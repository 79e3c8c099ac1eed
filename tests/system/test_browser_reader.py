"""A reader in a real browser, on `newsletter up`: sign up, confirm from the outbox, change
preferences, unsubscribe; and an operator's dashboard, screenshotted for a person to see."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser import chromium, screenshot_path
from tests.conftest import ROOT
from tests.embedded import Service, running_up

ADMIN_TOKEN = "browser-admin-token-" + uuid.uuid4().hex
READER = "joao.conceicao@example.com"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_up(tmp_path_factory.mktemp("var"), NEWSLETTER_ADMIN_TOKEN=ADMIN_TOKEN) as up:
        yield up


def wait_for_outbox(service: Service, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(list(service.outbox.glob("*.eml"))) < count:
        assert time.monotonic() < deadline, f"fewer than {count} message(s) in the outbox"
        time.sleep(0.3)


def open_in_outbox(page: Page, service: Service, subject: str) -> None:
    """From the outbox's list, the newest message whose subject says this."""
    page.goto(f"{service.base_url}/admin/outbox")
    page.get_by_role("link", name=re.compile(subject, re.IGNORECASE)).first.click()
    expect(page.locator("iframe.preview")).to_be_visible()


def follow_link_in_email(page: Page, href_part: str) -> Page:
    """Click a link inside the sandboxed preview, as a person would: it opens a new tab."""
    link = page.frame_locator("iframe.preview").locator(f'a[href*="{href_part}"]').first
    with page.context.expect_page() as opened:
        link.click()
    tab = opened.value
    tab.wait_for_load_state()
    return tab


def newsletter_cli(service: Service, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=ROOT,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def subscriber_state(service: Service) -> dict[str, object]:
    data = json.loads(newsletter_cli(service, "subscribers", "show", READER, "--json"))
    assert isinstance(data, dict)
    return data


def test_a_reader_signs_up_confirms_changes_preferences_and_leaves(service: Service) -> None:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="pt-PT")
        page = context.new_page()

        # A reader signs up on the public page, in Portuguese.
        page.goto(f"{service.base_url}/")
        page.get_by_label("Email address").fill(READER)
        page.get_by_label("Name").fill("João Conceição")
        page.get_by_label("Language", exact=True).select_option("pt")
        page.screenshot(path=screenshot_path("signup.png"), full_page=True)
        page.get_by_role("button", name="Subscribe").click()
        # The browser asks for Portuguese (locale pt-PT): the answer is in it.
        expect(page.get_by_role("heading", level=1)).to_have_text("Consulte a sua caixa de correio")

        # The confirmation arrives in the sink's outbox; an operator opens it on the
        # admin pages, after signing in through the real sign-in page.
        wait_for_outbox(service, 1)
        page.goto(f"{service.base_url}/admin/outbox")
        expect(page).to_have_url(re.compile(r"/admin/login\?next="))
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{service.base_url}/admin/outbox")
        expect(page.locator("table")).to_contain_text("João Conceição")
        page.locator("table a").first.click()
        expect(page.locator("pre.text-part")).to_contain_text("/confirm/")
        page.screenshot(path=screenshot_path("admin-outbox-message.png"), full_page=True)

        # The link in the email works for a person: a new tab confirms the subscription.
        confirmed = follow_link_in_email(page, "/confirm/")
        # The reader chose Portuguese: the pages of their links speak it.
        expect(confirmed.get_by_role("heading", level=1)).to_have_text("Subscrição confirmada")
        confirmed.close()

        # The welcome email carries the links to the preferences and to leave.
        wait_for_outbox(service, 2)
        page.goto(f"{service.base_url}/admin/outbox")
        page.locator("table a").first.click()
        preferences = follow_link_in_email(page, "/preferences/")
        expect(preferences.get_by_role("heading", level=1)).to_have_text("Your preferences")
        expect(preferences.get_by_label("Language")).to_have_value("pt")
        expect(preferences.get_by_label("Name")).to_have_value("João Conceição")
        preferences.get_by_label("Language").select_option("en")
        preferences.get_by_label("Time zone").fill("Asia/Macau")
        preferences.get_by_role("button", name="Save").click()
        expect(preferences.get_by_role("status")).to_have_text("Your preferences are saved.")
        expect(preferences.get_by_label("Language")).to_have_value("en")
        expect(preferences.get_by_label("Time zone")).to_have_value("Asia/Macau")
        preferences.reload()
        expect(preferences.get_by_label("Language")).to_have_value("en")
        preferences.close()

        # Unsubscribing from the email's link: a page, one button, a confirmation.
        leaving = follow_link_in_email(page, "/unsubscribe/")
        expect(leaving.get_by_role("heading", level=1)).to_have_text("Unsubscribe")
        leaving.get_by_role("button", name="Unsubscribe").click()
        expect(leaving.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
        leaving.close()

        # Another reader gets a digest, so that the dashboard has a message to count.
        sent_before = len(list(service.outbox.glob("*.eml")))
        newsletter_cli(service, "subscribers", "add", "leitora@example.com", "--confirmed")
        newsletter_cli(service, "digest", "send", "--json")
        wait_for_outbox(service, sent_before + 1)

        # The operator's dashboard, for a person to look at, once the worker has recorded
        # the delivery (just after the sink took the message).
        sent_card = page.locator(".card", has_text="Sent, last 24 h").locator("strong")
        deadline = time.monotonic() + 20
        while True:
            page.goto(f"{service.base_url}/admin")
            if sent_card.inner_text() == "1" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        expect(sent_card).to_have_text("1")
        expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
        expect(page.locator("svg[role=img]")).to_have_count(4)
        page.screenshot(path=screenshot_path("admin-dashboard.png"), full_page=True)
        page.emulate_media(color_scheme="dark")
        page.screenshot(path=screenshot_path("admin-dashboard-dark.png"), full_page=True)
        assert screenshot_path("signup.png").stat().st_size > 10_000
        context.close()

    state = subscriber_state(service)
    assert state["name"] == "João Conceição"
    assert state["language"] == "en"
    assert state["time_zone"] == "Asia/Macau"
    subscriptions = state["subscriptions"]
    assert isinstance(subscriptions, list)
    assert [s["status"] for s in subscriptions] == ["unsubscribed"]
    events = state["events"]
    assert isinstance(events, list)
    kinds = [e["kind"] for e in events]
    for kind in ("signed_up", "confirmed", "preferences_changed", "unsubscribed"):
        assert kind in kinds
