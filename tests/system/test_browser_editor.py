"""An editor in a real browser, on `newsletter up`: sign in, create a draft, confirm sending
it now and watch its progress bar fill, preview it; and the dashboard's door refusing what
it should."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, screenshot_path
from tests.embedded import Service, newsletter_cli, running_up

ADMIN_TOKEN = "browser-editor-token-" + uuid.uuid4().hex
READERS = ("ana.lima@example.com", "wei.chen@example.com", "joao.reis@example.com")
# Sending a digest goes through the beat, the dispatcher and a worker on the SQLite broker.
SENDING_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_up(
        tmp_path_factory.mktemp("var"),
        NEWSLETTER_ADMIN_TOKEN=ADMIN_TOKEN,
        # A wrong token is still refused, without making the test wait a second for it.
        NEWSLETTER_ADMIN_SIGNIN_DELAY_SECONDS="0.05",
    ) as up:
        for email in READERS:
            name = email.split("@")[0].replace(".", " ").title()
            newsletter_cli(up, "subscribers", "add", email, "--name", name, "--confirmed")
        yield up


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    try:
        yield context.new_page()
    finally:
        context.close()


def digest_state(service: Service, digest_id: int) -> str:
    status = json.loads(newsletter_cli(service, "digest", "status", str(digest_id), "--json"))
    return str(status["state"])


def sign_in(page: Page, service: Service, token: str = ADMIN_TOKEN) -> None:
    page.goto(f"{service.base_url}/admin")
    expect(page).to_have_url(re.compile(r"/admin/login\?next=/admin$"))
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def create_digest(page: Page, *, send_at: str | None = None, subject: str = "") -> int:
    """Through the form, as an editor would: a draft, then Send now… or Schedule…, and the
    confirmation's button; the digest's id (from its page's address)."""
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Digests").click()
    page.get_by_role("link", name="New digest").click()
    page.get_by_label("Newsletter").select_option("daily")
    if subject:
        page.get_by_label("Subject (optional)").fill(subject)
    page.screenshot(path=screenshot_path("digest-new.png"), full_page=True)
    page.get_by_role("button", name="Save draft").click()
    expect(page).to_have_url(re.compile(r"/admin/digests/\d+$"))
    match = re.search(r"/admin/digests/(\d+)$", page.url)
    assert match
    digest_id = int(match.group(1))
    expect(page.locator(f'[data-state-of="{digest_id}"]')).to_have_text("draft")
    page.screenshot(path=screenshot_path("digest-draft.png"), full_page=True)
    if send_at:
        page.get_by_label("Send at (date and time)").fill(send_at)
        page.get_by_role("button", name="Schedule…").click()
        expect(page.get_by_role("heading", name=f"Schedule digest #{digest_id}?")).to_be_visible()
        expect(page.locator(".reach")).to_contain_text(
            f"This digest will reach {len(READERS)} readers of Daily digest"
        )
        page.get_by_role("button", name="Schedule", exact=True).click()
    else:
        page.get_by_role("button", name="Send now…").click()
        expect(page.get_by_role("heading", name=f"Send digest #{digest_id} now?")).to_be_visible()
        expect(page.locator(".reach")).to_contain_text(
            f"This digest will reach {len(READERS)} readers of Daily digest: en {len(READERS)}"
        )
        page.screenshot(path=screenshot_path("digest-confirm.png"), full_page=True)
        page.get_by_role("button", name=f"Send to {len(READERS)} readers").click()
    expect(page).to_have_url(re.compile(rf"/admin/digests/{digest_id}$"))
    return digest_id


def test_a_wrong_token_is_refused_on_the_sign_in_page(page: Page, service: Service) -> None:
    sign_in(page, service, token="not-the-token")
    expect(page.get_by_role("alert")).to_have_text("That is not the admin token.")
    expect(page).to_have_url(re.compile(r"/admin/login"))
    expect(page.get_by_label("Admin token")).to_be_visible()
    page.goto(f"{service.base_url}/admin/digests")
    expect(page).to_have_url(re.compile(r"/admin/login\?next=/admin/digests$"))


def test_an_editor_sends_a_digest_now_and_watches_it_go_out(page: Page, service: Service) -> None:
    sign_in(page, service)
    expect(page).to_have_url(f"{service.base_url}/admin")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.screenshot(path=screenshot_path("dashboard.png"), full_page=True)

    before = len(list(service.outbox.glob("*.eml")))
    digest_id = create_digest(page)
    expect(page.get_by_role("status")).to_contain_text(f"Digest #{digest_id} is on its way")

    # The bar fills by itself (progress.js polling), without reloading by hand.
    bar = page.locator(f'.digest-progress[data-digest="{digest_id}"]')
    expect(bar.locator(".progress-percent")).to_have_text("100%", timeout=SENDING_TIMEOUT_MS)
    expect(bar.locator(".progress-text")).to_have_text(
        f"{len(READERS)} of {len(READERS)} sent · 0 bounced · 0 failed",
        timeout=SENDING_TIMEOUT_MS,
    )
    expect(page.locator(f'[data-state-of="{digest_id}"]').first).to_have_text(
        "sent", timeout=SENDING_TIMEOUT_MS
    )
    assert bar.locator(".progress .sent").evaluate("e => e.style.width") == "100%"
    expect(page.get_by_role("button", name="Cancel digest")).to_have_count(0)
    assert digest_state(service, digest_id) == "sent"
    page.screenshot(path=screenshot_path("digest.png"), full_page=True)
    deadline = time.monotonic() + 20
    while len(list(service.outbox.glob("*.eml"))) < before + len(READERS):
        assert time.monotonic() < deadline, "the digest's messages are not in the outbox"
        time.sleep(0.3)

    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Digests").click()
    row = page.locator("tr", has=page.locator(f'a[href="/admin/digests/{digest_id}"]'))
    expect(row.locator(".progress-percent")).to_have_text("100%")
    expect(row.locator(".state")).to_have_text("sent")
    page.screenshot(path=screenshot_path("digests.png"), full_page=True)

    # Preview as a sample reader: the email in a sandboxed frame, scripts off.
    page.goto(f"{service.base_url}/admin/digests/{digest_id}")
    page.get_by_role("button", name="Preview").click()
    expect(page).to_have_url(re.compile(rf"/admin/digests/{digest_id}/preview"))
    frame = page.locator("iframe.preview")
    assert frame.get_attribute("sandbox") == ""
    body = page.frame_locator("iframe.preview").locator("body")
    expect(body).to_contain_text("Putin", timeout=15_000)
    page.screenshot(path=screenshot_path("digest-preview.png"), full_page=True)
    assert screenshot_path("dashboard.png").stat().st_size > 10_000
    assert screenshot_path("digest-preview.png").stat().st_size > 10_000


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    page: Page, service: Service
) -> None:
    sign_in(page, service)
    digest_id = create_digest(page, send_at="2099-06-01T08:00", subject="Not before 2099")
    expect(page.locator(f'[data-state-of="{digest_id}"]')).to_have_text("scheduled")
    expect(page.locator(f'[data-banner-of="{digest_id}"]')).to_have_text(
        re.compile(r"^Scheduled for 2099-06-01 08:00 Europe/Lisbon \(UTC\+1\)\.$")
    )
    cancel_form = page.locator(f'form[action="/admin/digests/{digest_id}/cancel"]')
    removed = cancel_form.evaluate(
        "form => { const input = form.querySelector('input[name=csrf_token]');"
        " input.remove(); return input.value.length; }"
    )
    assert removed > 10
    with page.expect_response(f"**/admin/digests/{digest_id}/cancel") as answer:
        cancel_form.get_by_role("button", name="Cancel digest").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    assert digest_state(service, digest_id) == "scheduled"

    # The same form with its token does what it says.
    page.goto(f"{service.base_url}/admin/digests/{digest_id}")
    page.get_by_role("button", name="Cancel digest").click()
    expect(page.get_by_role("status")).to_contain_text(f"Digest #{digest_id} cancelled")
    assert digest_state(service, digest_id) == "cancelled"
