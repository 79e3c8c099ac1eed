"""A visitor's language in a real browser, on `newsletter up`: the browser's Accept-Language
first, then the switcher, which sticks from page to page; screenshots for a person."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser import chromium, screenshot_path
from tests.embedded import Service, running_up


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_up(tmp_path_factory.mktemp("var")) as up:
        yield up


def test_a_portuguese_browser_reads_portuguese_then_switches_to_chinese_and_stays(
    service: Service,
) -> None:
    with chromium() as browser:
        # Chromium sends Accept-Language from the context's locale: pt-PT.
        context = browser.new_context(viewport={"width": 1000, "height": 800}, locale="pt-PT")
        page = context.new_page()
        page.goto(f"{service.base_url}/")
        expect(page.locator("html")).to_have_attribute("lang", "pt-PT")
        expect(page.locator("footer")).to_contain_text(
            "Notícias dos países de língua portuguesa e da China."
        )
        expect(page.locator("nav.languages [aria-current=true]")).to_have_text("Português")
        page.screenshot(path=screenshot_path("languages-signup-pt.png"), full_page=True)

        # The switcher: 中文.
        page.locator("nav.languages").get_by_role("link", name="中文").click()
        expect(page).to_have_url(re.compile(r"\?lang=zh$"))
        expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
        expect(page.locator("footer")).to_contain_text("葡语国家与中国新闻。")
        page.screenshot(path=screenshot_path("languages-signup-zh.png"), full_page=True)

        # The next page, reached without ?lang=: still Chinese, though the browser asks pt.
        page.locator("#email").fill("leitor@example.com")
        page.locator("form[action='/subscribe'] button[type=submit]").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("请查收邮件")
        expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
        expect(page.locator("main")).to_contain_text("请点击其中的链接确认订阅")
        page.screenshot(path=screenshot_path("languages-answer-zh.png"), full_page=True)

        # And a page that does not exist, in Chinese too.
        page.goto(f"{service.base_url}/nowhere")
        expect(page.get_by_role("heading", level=1)).to_have_text("未找到")
        expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
        page.screenshot(path=screenshot_path("languages-404-zh.png"), full_page=True)
        context.close()
