"""Click analytics end to end: `newsletter up` on PostgreSQL and Redis (web, worker, beat)
with NEWSLETTER_TRACK_CLICKS on, a digest sent; a reader clicks two stories in Chromium, a
scripted link scanner fetches every link of another copy the moment it is delivered; the
report counts the reader's two clicks and the scanner's apart. With the setting off (the
embedded defaults), the email holds the articles' own addresses."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.browser import chromium, screenshot_path
from tests.conftest import REDIS_URL, create_postgres_database, drop_postgres_database
from tests.embedded import Service, emails_to, newsletter_cli, running_up

ADMIN_TOKEN = "browser-clicks-token-" + uuid.uuid4().hex
READER = "leitora@example.com"
GATEWAY = "scanned@example.com"
# What a gateway's scanner may say it is: the burst gives it away, not its name.
SCANNER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0"
READER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def markdown(title: str) -> str:
    return (
        f"---\ntitle: {title}\nlanguage: en\ntopics: [macau]\n"
        f"published_at: {datetime.now(UTC).isoformat(timespec='seconds')}\n---\n"
        f"{title}. The body of the story.\n"
    )


def with_articles(service: Service, var: Path) -> None:
    articles = var / "articles"
    articles.mkdir()
    (articles / "bridge.md").write_text(markdown("Macau bridge reopens to traffic"))
    (articles / "trams.md").write_text(markdown("Lisbon trams run all night"))
    newsletter_cli(service, "articles", "import", str(articles))
    for email in (READER, GATEWAY):
        newsletter_cli(service, "subscribers", "add", email, "--confirmed")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, postgres_server: str) -> Iterator[Service]:
    var = tmp_path_factory.mktemp("var")
    database = create_postgres_database(postgres_server)
    try:
        with running_up(
            var,
            NEWSLETTER_DATABASE_URL=database,
            NEWSLETTER_BROKER_URL=REDIS_URL,
            NEWSLETTER_QUEUE=f"clicks-{uuid.uuid4().hex[:8]}",
            NEWSLETTER_REDIS_KEY_PREFIX=f"clicks-{uuid.uuid4().hex[:8]}:",
            NEWSLETTER_ADMIN_TOKEN=ADMIN_TOKEN,
            NEWSLETTER_ADMIN_SIGNIN_DELAY_SECONDS="0.05",
            NEWSLETTER_TRACK_CLICKS="true",
        ) as up:
            with_articles(up, var)
            yield up
    finally:
        drop_postgres_database(postgres_server, database)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def story_links(message: EmailMessage) -> list[str]:
    found = re.findall(r'href="([^"]*/r/[^"]+)"', html_of(message))
    return list(dict.fromkeys(link.replace("&amp;", "&") for link in found))


def report(service: Service, digest_id: int) -> dict[str, Any]:
    answer = httpx.get(
        f"{service.base_url}/api/digests/{digest_id}/report",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_a_readers_clicks_are_counted_and_a_scanners_apart(
    tracked: Service, browser: Browser
) -> None:
    sent = newsletter_cli(tracked, "digest", "send", "--yes")
    digest_id = int(re.search(r"digest (\d+)", sent).group(1))  # type: ignore[union-attr]

    # The gateway's scanner: every link of its copy, the moment the copy arrives (our two
    # stories, and the seed article `newsletter up` imports).
    (scanned,) = emails_to(tracked, GATEWAY, 1, timeout=90)
    links = story_links(scanned)
    assert len(links) == 3 and all(link.startswith(tracked.base_url) for link in links)
    with httpx.Client(headers={"User-Agent": SCANNER_AGENT}, timeout=5) as scanner:
        started = time.monotonic()
        for link in links:
            assert scanner.get(link).status_code == 302
        assert time.monotonic() - started < 1.0

    # The reader opens her email in Chromium and reads both stories, a while apart.
    (mine,) = emails_to(tracked, READER, 1)
    # As her own Chromium says it is: a headless one's "HeadlessChrome" is a scanner's mark.
    page = browser.new_context(locale="en-GB", user_agent=READER_AGENT).new_page()
    for title in ("Macau bridge reopens to traffic", "Lisbon trams run all night"):
        page.set_content(html_of(mine))
        page.get_by_role("link", name=title).click()
        expect(page.get_by_role("heading", name=title)).to_be_visible()
        assert "/articles/" in page.url  # the redirect led to the story itself
        time.sleep(2)

    # The beat writes the buffer every 10 s; a copy is judged once its clicks have settled.
    deadline = time.monotonic() + 60
    while (found := report(tracked, digest_id))["clicks"] < 2 or found["machine_clicks"] < 3:
        assert time.monotonic() < deadline, found
        time.sleep(1)
    assert (found["clicks"], found["unique_clicks"], found["machine_clicks"]) == (2, 1, 3)
    assert found["delivered"] == 2 and found["click_rate"] == 0.5
    stories = {s["title"]: (s["clicks"], s["machine_clicks"]) for s in found["stories"]}
    assert stories["Lisbon trams run all night"] == (1, 1)
    assert stories["Macau bridge reopens to traffic"] == (1, 1)
    assert sum(machine for _, machine in stories.values()) == 3

    # The editor reads the same on the digest's page.
    desk = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    desk.goto(f"{tracked.base_url}/admin")
    desk.get_by_label("Admin token").fill(ADMIN_TOKEN)
    desk.get_by_role("button", name="Sign in").click()
    desk.goto(f"{tracked.base_url}/admin/digests/{digest_id}")
    section = desk.get_by_role("region", name="What readers read")
    expect(section).to_contain_text("Machine clicks")
    expect(section.get_by_role("img", name="Readers who clicked each story")).to_be_visible()
    section.screenshot(path=screenshot_path("digest-report.png"))


def test_with_tracking_off_the_email_links_the_articles_themselves(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    var = tmp_path_factory.mktemp("var")
    with running_up(var) as up:
        with_articles(up, var)
        newsletter_cli(up, "digest", "send", "--yes")
        (message,) = emails_to(up, READER, 1, timeout=90)
    html = html_of(message)
    assert "/r/" not in html and "?c=" not in html
    assert f'href="{up.base_url}/articles/' in html
