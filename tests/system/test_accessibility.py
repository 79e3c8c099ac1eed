"""Every reader page and every dashboard page, in light and in dark mode, checked by axe-core
in a real Chromium on `newsletter up`: no serious or critical violation."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser import Audit, chromium
from tests.conftest import ROOT
from tests.embedded import Service, emails_to, newsletter_cli, running_up

ADMIN_TOKEN = "a11y-admin-token-" + uuid.uuid4().hex
READER = "rita.a11y@example.com"
DIGEST_READERS = ("ana.a11y@example.com", "wei.a11y@example.com")
# A few pages worth a person's look, in both schemes (build/screenshots/a11y-*.png).
SCREENSHOTS = {"signup", "preferences", "article", "dashboard", "digest", "subscribers"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_up(
        tmp_path_factory.mktemp("var"),
        NEWSLETTER_ADMIN_TOKEN=ADMIN_TOKEN,
        NEWSLETTER_ADMIN_SIGNIN_DELAY_SECONDS="0.05",
        # The second signup for one address within the hour shows the 429 page.
        NEWSLETTER_SIGNUP_LIMIT_PER_ADDRESS_PER_HOUR="1",
    ) as up:
        for email in DIGEST_READERS:
            newsletter_cli(up, "subscribers", "add", email, "--confirmed")
        yield up


def link_in(message: EmailMessage, path_part: str) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = re.search(rf"https?://\S*{re.escape(path_part)}\S*", str(body.get_content()))
    assert match, f"no {path_part} link in {message['Subject']}"
    return match.group(0)


def wait_for_state(service: Service, digest_id: int, state: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = json.loads(newsletter_cli(service, "digest", "status", str(digest_id), "--json"))
        if status["state"] == state:
            return
        assert time.monotonic() < deadline, f"digest {digest_id} is {status['state']}"
        time.sleep(0.5)


def test_every_page_passes_axe_in_light_and_dark_mode(service: Service) -> None:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="en-GB")
        page = context.new_page()
        audit = Audit(page, screenshots=SCREENSHOTS)
        base = service.base_url

        # A digest for the dashboard's pages and the web copy, sent while the reader signs up.
        digest_id = json.loads(newsletter_cli(service, "digest", "send", "--json"))["id"]

        # The reader's pages, in the order a reader meets them.
        page.goto(f"{base}/")
        audit.check("signup")
        page.get_by_label("Email address").fill("rita@localhost")
        page.get_by_role("button", name="Subscribe").click()
        # A submit is a navigation: each audit waits for the answer, not the page it leaves.
        expect(page.get_by_role("alert").first).to_be_visible()
        audit.check("signup refused (422)")
        page.get_by_label("Email address").fill(READER)
        # The reader reads English: the pages after the confirmation follow their choice.
        page.get_by_label("Language", exact=True).select_option("en")
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
        audit.check("check your inbox")
        page.goto(f"{base}/")
        page.get_by_label("Email address").fill(READER)
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Please try again later")
        audit.check("signup limited (429)")

        (confirmation,) = emails_to(service, READER, 1)
        page.goto(link_in(confirmation, "/confirm/"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Subscription confirmed")
        audit.check("confirmed")
        welcome = emails_to(service, READER, 2)[1]
        page.goto(link_in(welcome, "/preferences/"))
        audit.check("preferences")
        page.get_by_label("Erase everything about me").check()
        page.get_by_role("button", name="Email me the link to erase my data").click()
        expect(page).to_have_url(re.compile(r"/erase$"))
        audit.check("erase link sent")
        page.goto(link_in(emails_to(service, READER, 3)[2], "/erase/"))
        audit.check("erase")
        page.goto(link_in(welcome, "/unsubscribe/"))
        audit.check("unsubscribe")
        page.get_by_role("button", name="Unsubscribe").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
        audit.check("unsubscribed")

        articles = json.loads(newsletter_cli(service, "articles", "list", "--json"))
        page.goto(f"{base}/articles/{articles[0]['slug']}")
        audit.check("article")
        page.goto(f"{base}/articles/no-such-article")
        audit.check("not found (404)")
        page.goto(f"{base}/digests/not-a-number")
        audit.check("invalid (422)")
        wait_for_state(service, digest_id, "sent")
        page.goto(f"{base}/digests/{digest_id}")
        audit.check("digest web copy")
        page.goto(f"{base}/archive/daily")
        audit.check("archive")

        # The dashboard, page by page.
        page.goto(f"{base}/admin")
        expect(page).to_have_url(re.compile(r"/admin/login"))
        audit.check("login")
        page.get_by_label("Admin token").fill("not-the-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_be_visible()
        audit.check("login refused")
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{base}/admin")
        audit.check("dashboard")
        for path, name in [
            ("/admin/digests", "digests"),
            ("/admin/digests/new", "digest new"),
            (f"/admin/digests/{digest_id}", "digest"),
            (f"/admin/digests/{digest_id}/preview", "digest preview"),
            ("/admin/digests/999999", "digest not found"),
            ("/admin/newsletters", "newsletters"),
            ("/admin/articles", "articles"),
            ("/admin/subscribers", "subscribers"),
            ("/admin/subscribers/import", "subscribers import"),
            ("/admin/suppressions", "suppressions"),
            ("/admin/outbox", "outbox"),
        ]:
            page.goto(f"{base}{path}")
            audit.check(name)
        page.locator("table a").first.click()
        expect(page.locator("iframe.preview")).to_be_visible()
        audit.check("outbox message")
        # A draft, and the confirmation before it is sent (left unconfirmed: nothing is sent).
        page.goto(f"{base}/admin/digests/new")
        page.get_by_role("button", name="Save draft").click()
        expect(page.get_by_role("button", name="Send now…")).to_be_visible()
        audit.check("digest draft")
        page.get_by_role("button", name="Send now…").click()
        expect(page.get_by_role("heading", name=re.compile(r"now\?$"))).to_be_visible()
        audit.check("digest confirmation")
        page.goto(f"{base}/admin/subscribers")
        page.get_by_role("link", name=DIGEST_READERS[0]).first.click()
        expect(page).to_have_url(re.compile(r"/admin/subscribers/\d+$"))
        audit.check("subscriber")
        page.goto(f"{base}/admin/subscribers/import")
        csv = ROOT / "build" / "a11y-import.csv"
        csv.parent.mkdir(exist_ok=True)
        csv.write_text("email,name\nnova.a11y@example.com,Nova\nnot an address,Bad\n")
        page.locator("input[type=file]").first.set_input_files(Path(csv))
        page.locator("form[enctype='multipart/form-data'] button[type=submit]").click()
        expect(page.get_by_role("heading", name=re.compile(r"would do$"))).to_be_visible()
        audit.check("subscribers import check")
        context.close()

    assert len(audit.checked) == 34, audit.checked
    assert not audit.found, audit.report()
