"""A reader in a real browser, on `newsletter up`: sign up, confirm from the outbox, change
preferences, unsubscribe; and an operator's dashboard, screenshotted for a person to see."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from playwright.sync_api import Page, expect

from tests.browser import chromium, screenshot_path
from tests.embedded import Service, newsletter_cli, running_up

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


def subscriber_state(service: Service) -> dict[str, object]:
    data = json.loads(newsletter_cli(service, "subscribers", "show", READER, "--json"))
    assert isinstance(data, dict)
    return data


def test_a_reader_signs_up_confirms_changes_preferences_and_leaves(service: Service) -> None:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="pt-PT")
        page = context.new_page()

        # A reader signs up on the public page, in Portuguese: the browser asks for it, and
        # the form's language list proposes it.
        page.goto(f"{service.base_url}/")
        expect(page.locator("html")).to_have_attribute("lang", "pt-PT")
        page.get_by_label("Endereço de email").fill(READER)
        page.get_by_label("Nome").fill("João Conceição")
        expect(page.get_by_label("Língua")).to_have_value("pt")
        page.screenshot(path=screenshot_path("signup.png"), full_page=True)
        page.get_by_role("button", name="Subscrever").click()
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
        expect(confirmed.get_by_role("heading", level=1)).to_have_text("Subscrição confirmada")
        confirmed.close()

        # The welcome email carries the links to the preferences and to leave.
        wait_for_outbox(service, 2)
        page.goto(f"{service.base_url}/admin/outbox")
        page.locator("table a").first.click()
        preferences = follow_link_in_email(page, "/preferences/")
        # In the reader's language; saved in English, the page answers in English.
        expect(preferences.get_by_role("heading", level=1)).to_have_text("As suas preferências")
        expect(preferences.get_by_label("Língua")).to_have_value("pt")
        expect(preferences.get_by_label("Nome")).to_have_value("João Conceição")
        preferences.get_by_label("Língua").select_option("en")
        preferences.get_by_label("Fuso horário").fill("Asia/Macau")
        preferences.get_by_role("button", name="Guardar").click()
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


def link_mailed_to(service: Service, address: str, path: str) -> str:
    """The newest link to `path` in a message the outbox holds for this address (its path)."""
    found = ""
    for eml in sorted(service.outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime):
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        if address not in str(message["To"]):
            continue
        assert isinstance(message, EmailMessage)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        match = re.search(rf"https?://[^/\s]+(/{path}/[^\s>\"]+)", body.get_content())
        if match:
            found = match.group(1)
    return found


def wait_for_link(service: Service, address: str, path: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not (link := link_mailed_to(service, address, path)):
        assert time.monotonic() < deadline, f"no /{path}/ link mailed to {address}"
        time.sleep(0.3)
    return link


def test_the_signup_page_proposes_the_browsers_zone_and_the_zone_list_is_searchable(
    service: Service,
) -> None:
    reader = "leitor.macau@example.com"
    with chromium() as browser:
        # A reader in Macau whose browser reads Chinese.
        context = browser.new_context(
            viewport={"width": 1000, "height": 900}, locale="zh-CN", timezone_id="Asia/Macau"
        )
        page = context.new_page()
        page.goto(f"{service.base_url}/")
        expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
        expect(page.get_by_label("语言", exact=True)).to_have_value("zh")
        # The page's script proposes the browser's zone; the reader may change it.
        zone = page.get_by_label("时区")
        expect(zone).to_have_value("Asia/Macau")
        page.get_by_label("邮箱地址").fill(reader)
        page.screenshot(path=screenshot_path("signup-zh-macau.png"), full_page=True)
        page.get_by_role("button", name="订阅").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("请查收邮件")
        expect(page.locator("main")).to_contain_text("垃圾邮件文件夹")
        page.screenshot(path=screenshot_path("signup-answer-zh.png"), full_page=True)

        page.goto(service.base_url + wait_for_link(service, reader, "confirm"))
        expect(page.get_by_role("heading", level=1)).to_have_text("订阅已确认")
        preferences = wait_for_link(service, reader, "preferences")

        # The preferences: the zone as people tell it, and a list found by typing.
        page.goto(service.base_url + preferences)
        expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
        zone = page.get_by_label("时区")
        expect(zone).to_have_value("Asia/Macau")
        expect(page.locator("#time_zone-now")).to_contain_text("Asia/Macau (UTC+8)")
        zone.fill("")
        zone.press_sequentially("sao_p")
        found = zone.evaluate(
            """field => Array.from(field.list.options)
                .filter(o => o.value.toLowerCase().includes(field.value.toLowerCase()))
                .map(o => o.value + " | " + o.label)"""
        )
        assert found == ["America/Sao_Paulo | America/Sao_Paulo (UTC-3)"]
        assert zone.evaluate("field => field.list.options.length") > 300
        zone.fill("America/Sao_Paulo")
        page.get_by_role("button", name="保存").click()
        expect(page.get_by_role("status")).to_have_text("您的偏好设置已保存。")
        expect(page.locator("#time_zone-now")).to_contain_text("America/Sao_Paulo (UTC-3)")

        # A zone nobody has: refused next to the field, the other edit kept.
        page.get_by_label("姓名").fill("澳门读者")
        zone.fill("Mars/Olympus")
        page.get_by_role("button", name="保存").click()
        expect(page.locator("#time_zone-error")).to_be_visible()
        expect(page.get_by_label("姓名")).to_have_value("澳门读者")
        page.screenshot(path=screenshot_path("preferences-zh-refused.png"), full_page=True)

        # Leaving from the email's link, then taking it back from the same page.
        page.goto(service.base_url + wait_for_link(service, reader, "unsubscribe"))
        page.get_by_role("button", name="退订").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("您已退订")
        expect(page.locator("main")).to_contain_text(reader)
        page.screenshot(path=screenshot_path("unsubscribed-zh.png"), full_page=True)
        page.get_by_role("button", name="重新订阅").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("欢迎回来")
        context.close()

    state = json.loads(newsletter_cli(service, "subscribers", "show", reader, "--json"))
    assert state["time_zone"] == "America/Sao_Paulo" and state["language"] == "zh"
    assert [s["status"] for s in state["subscriptions"]] == ["subscribed"]
