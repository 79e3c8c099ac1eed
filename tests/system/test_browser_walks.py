"""A Portuguese and a Chinese reader walked in a real browser from signup to unsubscribe and
back, on `newsletter up`: every page in their language, `<html lang>` right, axe-core clean in
light and dark, each page screenshotted (build/screenshots/walk-<lang>-<step>-<scheme>.png).

The expected words come from the .po catalogs (`translations(language).gettext(msgid)`), so
the test reads like the English pages and checks that the pages use the catalog."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cache

import pytest
from babel.messages.pofile import read_po
from playwright.sync_api import Browser, Page, expect

from newsletter.core.i18n import LANGUAGE_TAGS, LOCALES_DIR, translations
from tests.browser import Audit, chromium, screenshot_path
from tests.embedded import Service, emails_to, running_up

PUBLISHER = "Plataforma"
# The name every install's first newsletter starts with; each language has its own.
ENGLISH_NEWSLETTER = "Daily digest"


@dataclass(frozen=True)
class Reader:
    language: str
    locale: str  # the browser's, sent as Accept-Language
    browser_zone: str  # the browser's clock, proposed by the signup page
    new_zone: str  # the zone the reader moves to on the preferences page
    new_zone_label: str
    email: str
    name: str


READERS = [
    Reader(
        "pt",
        "pt-PT",
        "Europe/Lisbon",
        "America/Sao_Paulo",
        "America/Sao_Paulo (UTC-3)",
        "ines.walk@example.com",
        "Inês Lacerda",
    ),
    Reader(
        "zh",
        "zh-CN",
        "Asia/Macau",
        "Asia/Shanghai",
        "Asia/Shanghai (UTC+8)",
        "wei.walk@example.com",
        "林伟",
    ),
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_up(tmp_path_factory.mktemp("var"), NEWSLETTER_PUBLISHER_NAME=PUBLISHER) as up:
        yield up


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@cache
def english_phrases(language: str) -> tuple[str, ...]:
    """Every English phrase of the catalog that the language says otherwise: the literal
    parts between placeholders, of two words or more (a lone word could be a name)."""
    po_file = LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"
    with po_file.open("rb") as handle:
        catalog = read_po(handle)
    phrases = set()
    for message in catalog:
        if not message.id or not isinstance(message.id, str) or message.id == message.string:
            continue
        for part in re.split(r"%\(\w+\)s", message.id):
            part = part.strip(" .,:;·()")
            if " " in part and len(part) >= 8:
                phrases.add(part)
    return tuple(sorted(phrases))


class Walk:
    """One reader's pages: each checked for its language, its `lang`, and by axe."""

    def __init__(self, page: Page, reader: Reader) -> None:
        self.page = page
        self.reader = reader
        self.gettext = translations(reader.language).gettext
        self.audit = Audit(page, screenshots=_Everything(), prefix=f"walk-{reader.language}")
        self.step = 0

    def _(self, msgid: str, **values: str) -> str:
        text = self.gettext(msgid)
        return text % values if values else text

    def says(self, name: str, heading: str, /, *phrases: str, **values: str) -> None:
        """The page has this heading and these phrases in the reader's language, no English
        phrase of the catalog, the right `lang`; then axe in both schemes."""
        expect(self.page.get_by_role("heading", level=1)).to_have_text(self._(heading, **values))
        self.reads(self.page, name, heading, *phrases, **values)
        self.step += 1
        self.audit.check(f"{self.step:02d}-{name}")

    def reads(self, page: Page, name: str, /, *phrases: str, **values: str) -> None:
        """The page (or email) says these phrases in the reader's language, and no English."""
        language = self.reader.language
        expect(page.locator("html")).to_have_attribute("lang", LANGUAGE_TAGS[language])
        text = page.locator("body").inner_text()
        for msgid in phrases:
            translated = self._(msgid, **values)
            assert translated in text, f"{name}: no {translated!r} ({msgid!r})"
        english = [p for p in english_phrases(language) if p in text]
        assert not english, f"{name}: English on a {language} page: {english}"
        assert ENGLISH_NEWSLETTER not in text, f"{name}: the newsletter's English name"
        if language == "zh":
            # Chinese puts no space after a full stop (a template's line break can).
            assert "。 " not in text, f"{name}: a space after 。 in {text!r}"


class _Everything:
    """Every page is screenshotted."""

    def __contains__(self, name: object) -> bool:
        return True


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def link_in(message: EmailMessage, path_part: str) -> str:
    match = re.search(rf"https?://\S*{re.escape(path_part)}\S*", text_of(message))
    assert match, f"no {path_part} link in {message['Subject']}"
    return match.group(0)


@pytest.mark.parametrize("reader", READERS, ids=[r.language for r in READERS])
def test_a_reader_walks_from_signup_to_unsubscribe_and_back_in_their_language(
    service: Service, browser: Browser, reader: Reader
) -> None:
    context = browser.new_context(
        viewport={"width": 900, "height": 900},
        locale=reader.locale,
        timezone_id=reader.browser_zone,
    )
    page = context.new_page()
    walk = Walk(page, reader)
    _ = walk._

    # The signup page, in the browser's language; the form proposes it and the browser's zone.
    page.goto(f"{service.base_url}/")
    walk.says(
        "signup",
        "Subscribe to %(publisher)s",
        "Email address",
        "Time zone",
        "News of the Portuguese-speaking countries and China.",
        publisher=PUBLISHER,
    )
    expect(page.locator("#language")).to_have_value(reader.language)
    expect(page.locator("#time_zone")).to_have_value(reader.browser_zone)
    expect(page).to_have_title(f"{_('Subscribe')} · {PUBLISHER}")
    page.get_by_label(_("Email address")).fill(reader.email)
    page.get_by_label(_("Name"), exact=False).first.fill(reader.name)
    page.get_by_role("button", name=_("Subscribe"), exact=True).click()
    walk.says("check-your-inbox", "Check your inbox", "Back to the signup page")

    # The confirmation email speaks the reader's language too.
    (confirmation,) = emails_to(service, reader.email, 1)
    assert confirmation["Subject"] == _(
        "Please confirm your subscription to %(publisher)s", publisher=PUBLISHER
    )
    body = text_of(confirmation)
    assert _("Hello %(name)s,", name=reader.name) in body
    assert _("To confirm, open this link:") in body
    assert "To confirm, open this link:" not in body
    # Its HTML, as a mail reader shows it.
    html = confirmation.get_body(preferencelist=("html",))
    assert html is not None
    email = context.new_page()
    email.set_content(str(html.get_content()))
    walk.reads(
        email,
        "confirmation email",
        "Hello %(name)s,",
        "Confirm my subscription",
        name=reader.name,
    )
    email.screenshot(
        path=screenshot_path(f"walk-{reader.language}-02-confirmation-email.png"), full_page=True
    )
    email.close()

    page.goto(link_in(confirmation, "/confirm/"))
    walk.says(
        "confirmed",
        "Subscription confirmed",
        "Your subscription is confirmed. The next issue will reach your inbox.",
    )

    # The preferences, from the welcome email: the reader moves to another zone.
    welcome = emails_to(service, reader.email, 2)[1]
    assert welcome["Subject"] == _("Welcome to %(publisher)s", publisher=PUBLISHER)
    page.goto(link_in(welcome, "/preferences/"))
    walk.says("preferences", "Your preferences", "Unsubscribe from everything", "Your data")
    expect(page.locator("#language")).to_have_value(reader.language)
    expect(page.locator("#time_zone")).to_have_value(reader.browser_zone)
    page.locator("#time_zone").fill(reader.new_zone)
    page.get_by_role("button", name=_("Save"), exact=True).click()
    expect(page.get_by_role("status")).to_have_text(_("Your preferences are saved."))
    walk.says("preferences-saved", "Your preferences", "Your preferences are saved.")
    expect(page.locator("#time_zone-now")).to_contain_text(reader.new_zone_label)

    # Unsubscribing from the email's link; then the way back the page offers.
    page.goto(link_in(welcome, "/unsubscribe/"))
    walk.says("unsubscribe", "Unsubscribe")
    expect(page.locator("main")).to_contain_text(reader.email)
    page.locator("main").get_by_role("button", name=_("Unsubscribe"), exact=True).click()
    walk.says(
        "unsubscribed",
        "You are unsubscribed",
        "Pressed by mistake?",
        "Your preferences: newsletters, topics, language and time zone",
    )
    # The other state: the old confirmation link says plainly that the reader is not
    # subscribed; the unsubscribe link, opened again, still offers the way back.
    page.goto(link_in(confirmation, "/confirm/"))
    walk.says(
        "old-confirmation-link",
        "You are not subscribed",
        "To come back, subscribe again on our signup page: we will send a new message to confirm.",
    )
    page.goto(link_in(welcome, "/unsubscribe/"))
    walk.says("unsubscribe-again", "You are unsubscribed", "Pressed by mistake?")
    page.get_by_role("button", name=_("Subscribe again"), exact=True).click()
    walk.says("welcome-back", "Welcome back")
    expect(page.get_by_role("status")).to_contain_text(reader.email)
    context.close()

    assert not walk.audit.found, walk.audit.report()
