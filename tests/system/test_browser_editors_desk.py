"""The editor's desk in a real browser, on `newsletter up`: a draft with a note in two
languages and a pinned story, a test send to the editor alone, the confirmed send, then the
public archive and its feed; screenshots at desktop and at phone width."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import feedparser
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, screenshot_path
from tests.embedded import Service, emails_to, newsletter_cli, running_up

ADMIN_TOKEN = "browser-desk-token-" + uuid.uuid4().hex
EDITOR = "editor@example.org"
READERS = {"rita@example.com": "pt", "ana@example.com": "en", "li@example.com": "zh"}
SENDING_TIMEOUT_MS = 90_000
PINNED = "Ponte de Macau reabre ao trânsito"


def markdown(title: str, language: str, story: str) -> str:
    return (
        f"---\ntitle: {title}\nlanguage: {language}\nstory: {story}\ntopics: [macau]\n"
        f"published_at: {datetime.now(UTC).isoformat(timespec='seconds')}\n---\n"
        f"{title}. O trânsito voltou hoje.\n"
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    var = tmp_path_factory.mktemp("var")
    with running_up(
        var,
        NEWSLETTER_ADMIN_TOKEN=ADMIN_TOKEN,
        NEWSLETTER_ADMIN_SIGNIN_DELAY_SECONDS="0.05",
        NEWSLETTER_TEST_RECIPIENTS=EDITOR,
    ) as up:
        articles = var / "articles"
        articles.mkdir()
        (articles / "ponte.md").write_text(markdown(PINNED, "pt", "macau-bridge"))
        (articles / "bridge.md").write_text(
            markdown("Macau bridge reopens to traffic", "en", "macau-bridge")
        )
        newsletter_cli(up, "articles", "import", str(articles))
        for email, language in READERS.items():
            newsletter_cli(up, "subscribers", "add", email, "--language", language, "--confirmed")
        yield up


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


def new_page(browser: Browser, width: int, height: int) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    return context.new_page()


def sign_in(page: Page, service: Service) -> None:
    page.goto(f"{service.base_url}/admin")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def digests_to(service: Service, address: str, count: int = 0) -> list[EmailMessage]:
    """The digests (not the welcome: no web copy link) the sink kept for this address."""
    deadline = time.monotonic() + 30
    while True:
        found = [m for m in emails_to(service, address, 0, timeout=1) if "/digests/" in text_of(m)]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"fewer than {count} digest(s) to {address}"
        time.sleep(0.3)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def test_an_editor_shapes_tests_confirms_and_sends_then_finds_it_in_the_archive(
    browser: Browser, service: Service, tmp_path: Path
) -> None:
    page = new_page(browser, 1280, 900)
    sign_in(page, service)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Digests").click()
    page.get_by_role("link", name="New digest").click()
    page.get_by_label("Newsletter").select_option("daily")
    page.get_by_role("button", name="Save draft").click()
    expect(page).to_have_url(re.compile(r"/admin/digests/\d+$"))
    digest_id = int(page.url.rsplit("/", 1)[1])

    # The editor's note in Portuguese and in English, and the bridge story pinned first.
    page.get_by_label("Editor's note (Português, Markdown)").fill("Bom dia! A **ponte** reabriu.")
    page.get_by_label("Editor's note (English, Markdown)").fill("Good morning: the bridge is open.")
    page.get_by_label(f"Place of “{PINNED}”").fill("1")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text(f"Digest #{digest_id} saved.")
    expect(page.get_by_label(f"Place of “{PINNED}”")).to_have_value("1")
    page.screenshot(path=screenshot_path("editor-desk.png"), full_page=True)

    # A test to herself: one copy per language the readers read, marked, and no reader mailed.
    expect(page.get_by_label("To (your own addresses, separated by commas)")).to_have_value(EDITOR)
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status")).to_contain_text("Test send #")
    tests = emails_to(service, EDITOR, len(READERS))
    subjects = sorted(str(m["Subject"]) for m in tests)
    assert all(s.startswith("[TEST] ") for s in subjects), subjects
    portuguese = next(m for m in tests if str(m["Subject"]).startswith(f"[TEST] {PINNED}"))
    assert "Bom dia! A **ponte** reabriu." in text_of(portuguese)
    deadline = time.monotonic() + 20
    while True:
        page.reload()
        if page.get_by_text(f"{EDITOR}: sent").count():
            break
        assert time.monotonic() < deadline, "the test send never showed as sent"
        time.sleep(0.5)
    for reader in READERS:
        assert digests_to(service, reader) == [], reader

    # The confirmation names the readers it will reach; then the send.
    page.get_by_role("button", name="Send now…").click()
    expect(page.locator(".reach")).to_contain_text(
        "This digest will reach 3 readers of Daily digest"
    )
    page.screenshot(path=screenshot_path("editor-confirm.png"), full_page=True)
    page.get_by_role("button", name="Send to 3 readers").click()
    expect(page.locator(f'[data-state-of="{digest_id}"]').first).to_have_text(
        "sent", timeout=SENDING_TIMEOUT_MS
    )
    (rita,) = digests_to(service, "rita@example.com", 1)
    assert str(rita["Subject"]).startswith(PINNED)
    assert "Bom dia! A **ponte** reabriu." in text_of(rita)
    (li,) = digests_to(service, "li@example.com", 1)
    assert "Good morning: the bridge is open." in text_of(li)

    # The archive lists it, in the visitor's language, and its feed reads back.
    page.goto(f"{service.base_url}/archive/daily?lang=pt")
    expect(page.get_by_role("heading", name="Resumo diário: o arquivo")).to_be_visible()
    expect(page.locator("ol.archive li").first).to_contain_text(PINNED)
    expect(page.get_by_role("link", name="Subscrever Resumo diário")).to_be_visible()
    page.screenshot(path=screenshot_path("archive-pt.png"), full_page=True)
    feed = page.request.get(f"{service.base_url}/archive/daily/feed.xml?lang=pt")
    parsed = feedparser.parse(feed.body())
    assert parsed.bozo == 0 and parsed.entries[0].title.startswith(PINNED)
    page.locator("ol.archive li a").first.click()
    # The web copy: the Portuguese one, with its note, and a call to subscribe.
    expect(page.locator("body")).to_contain_text("Bom dia!")
    expect(page.get_by_role("link", name="Subscrever Resumo diário")).to_be_visible()
    page.context.close()

    # At phone width: the digest's page and the archive fit the screen.
    phone = new_page(browser, 390, 844)
    sign_in(phone, service)
    for path, shot in (
        (f"/admin/digests/{digest_id}", "editor-digest-phone.png"),
        ("/archive/daily?lang=en", "archive-phone.png"),
    ):
        phone.goto(f"{service.base_url}{path}")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
        phone.screenshot(path=screenshot_path(shot), full_page=True)
    phone.context.close()
