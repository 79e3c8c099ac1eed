"""The readers' pages in their language: Accept-Language, the switcher's cookie, the reader's
stored language on the pages of their links; error pages too; newsletters named in each."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import urljoin

import pytest
import redis
from fastapi.testclient import TestClient

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Article, Digest, DigestState, DigestVariant
from newsletter.core.tokens import Purpose, make_reader_token
from newsletter.subscribers import newsletters, notices, signup_limits
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.newsletters import get_by_slug, newsletter_text
from newsletter.web.app import create_app
from tests.factories import add_article, add_reader, link_token
from tests.fakes import BrokenQueue, RecordingQueue

LANG = {"en": 'lang="en"', "pt": 'lang="pt-PT"', "zh": 'lang="zh-Hans"'}
# A phrase of each page, by language.
CHECK_YOUR_INBOX = {
    "en": "Check your inbox",
    "pt": "Consulte a sua caixa de correio",
    "zh": "请查收邮件",
}
NOT_FOUND = {"en": "Not found", "pt": "Não encontrado", "zh": "未找到"}
CONFIRMED = {"en": "Subscription confirmed", "pt": "Subscrição confirmada", "zh": "订阅已确认"}
UNSUBSCRIBED = {
    "en": "You are unsubscribed",
    "pt": "A sua subscrição foi cancelada",
    "zh": "您已退订",
}
ERASED = {
    "en": "Your data is erased",
    "pt": "Os seus dados foram eliminados",
    "zh": "您的数据已删除",
}
FOOTER = {
    "en": "News of the Portuguese-speaking countries and China.",
    "pt": "Notícias dos países de língua portuguesa e da China.",
    "zh": "葡语国家与中国新闻。",
}
ACCEPT = {"en": "en-GB,en;q=0.9", "pt": "pt-PT,pt;q=0.9,en;q=0.5", "zh": "zh-CN,zh;q=0.9"}
LANGUAGES = ("pt", "en", "zh")


@pytest.fixture
def app(clean_db: str, redis_broker: str) -> Any:
    # Signup counts start afresh for each test (this run's Redis database is its own).
    signup_limits._local.clear()
    with redis.Redis.from_url(redis_broker) as store:
        for key in store.scan_iter(
            f"{get_settings().redis_key_prefix}{signup_limits.KEY_PREFIX}:*"
        ):
            store.delete(key)
    app = create_app()
    app.state.queue = RecordingQueue()
    return app


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def in_language(html: str, language: str, phrase: dict[str, str]) -> bool:
    """The page says it is in `language`, and says `phrase` in it and in no other."""
    others = [phrase[other] for other in LANGUAGES if other != language]
    return (
        f"<html {LANG[language]}>" in html
        and phrase[language] in html
        and FOOTER[language] in html
        and not any(text in html for text in others)
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_signup_answer_follows_accept_language(client: TestClient, language: str) -> None:
    answer = client.post(
        "/subscribe",
        data={"email": "ana@example.com"},
        headers={"Accept-Language": ACCEPT[language]},
    )
    assert answer.status_code == 202
    assert in_language(answer.text, language, CHECK_YOUR_INBOX)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_switcher_cookie_wins_over_accept_language(client: TestClient, language: str) -> None:
    other = "zh" if language != "zh" else "pt"
    chosen = client.get(f"/?lang={language}", headers={"Accept-Language": ACCEPT[other]})
    assert chosen.cookies.get("lang") == language
    # The next page, with the cookie the switcher set, whatever the browser asks for.
    answer = client.post(
        "/subscribe", data={"email": "ana@example.com"}, headers={"Accept-Language": ACCEPT[other]}
    )
    assert in_language(answer.text, language, CHECK_YOUR_INBOX)


def test_a_page_whose_language_the_visitor_chose_varies_by_it_for_caches(
    client: TestClient,
) -> None:
    signup = client.get("/", headers={"Accept-Language": ACCEPT["zh"]})
    assert "accept-language" in signup.headers["vary"].lower()
    assert "cookie" in signup.headers["vary"].lower()


def test_every_switcher_link_leads_to_a_page_even_from_a_form_answer(client: TestClient) -> None:
    pages = [
        ("/", client.get("/")),
        ("/subscribe", client.post("/subscribe", data={"email": "ana@example.com"})),
        ("/subscribe", client.post("/subscribe", data={"email": "not an address"})),
    ]
    for path, answered in pages:
        links = re.findall(r'<a href="([^"]*lang=\w+)" lang="(\w+)"', answered.text)
        assert len(links) == 2, answered.text
        for href, language in links:
            followed = client.get(urljoin(f"http://testserver{path}", href))
            assert followed.status_code == 200, (path, href)
            assert f"<html {LANG[language]}>" in followed.text


def test_the_signup_form_names_each_newsletter_in_the_page_language(client: TestClient) -> None:
    names = {"en": "Daily digest", "pt": "Resumo diário", "zh": "每日摘要"}
    with db.session_scope() as session:
        newsletters.set_translations(
            get_by_slug(session, "daily"), names={"pt": names["pt"], "zh": names["zh"]}
        )
    for language, name in names.items():
        signup = client.get("/", headers={"Accept-Language": ACCEPT[language]})
        assert f"> {name}</label>" in signup.text


def test_the_signup_answer_is_one_for_every_address_in_each_language(client: TestClient) -> None:
    add_reader("known@example.com", language="zh")
    for language in LANGUAGES:
        headers = {"Accept-Language": ACCEPT[language]}
        known = client.post("/subscribe", data={"email": "known@example.com"}, headers=headers)
        new = client.post("/subscribe", data={"email": "new@example.com"}, headers=headers)
        # The known reader's own language does not show through: the visitor's is spoken.
        assert (known.status_code, known.text) == (new.status_code, new.text)
        assert in_language(known.text, language, CHECK_YOUR_INBOX)


@pytest.mark.parametrize("language", LANGUAGES)
def test_error_pages_speak_the_visitor_language(
    app: Any, client: TestClient, language: str
) -> None:
    headers = {"Accept-Language": ACCEPT[language]}
    missing = client.get("/articles/no-such-story", headers=headers)
    assert missing.status_code == 404
    assert in_language(missing.text, language, NOT_FOUND)
    no_route = client.get("/nowhere", headers=headers)
    assert no_route.status_code == 404 and in_language(no_route.text, language, NOT_FOUND)
    invalid = client.get("/digests/0", headers=headers)
    assert invalid.status_code == 422
    assert in_language(
        invalid.text,
        language,
        {
            "en": "Please check what you sent",
            "pt": "Verifique o que enviou",
            "zh": "请检查您提交的内容",
        },
    )
    broken_link = client.get("/confirm/not-a-token", headers=headers)
    assert broken_link.status_code == 400
    assert in_language(
        broken_link.text,
        language,
        {"en": "Link not valid", "pt": "Ligação inválida", "zh": "链接无效"},
    )
    # A link withdrawn since: the store's words, in the visitor's language.
    reader = add_reader("ana@example.com")
    with db.session_scope() as session:
        subscribers.revoke_links(session, subscriber_id=reader)
    token = make_reader_token(get_settings().secret_key, Purpose.PREFERENCES, reader, 0)
    withdrawn = client.get(f"/preferences/{token}", headers=headers)
    assert withdrawn.status_code == 400
    assert in_language(
        withdrawn.text,
        language,
        {
            "en": "This link was withdrawn",
            "pt": "Esta ligação foi retirada",
            "zh": "此链接已被撤销",
        },
    )
    # The API answers programs, in English, whatever the language asked.
    assert client.get(
        "/no-such-page", headers={**headers, "Accept": "application/json"}
    ).json() == {"detail": "There is nothing here."}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_429_and_503_pages_speak_the_visitor_language(
    app: Any, client: TestClient, language: str
) -> None:
    settings = get_settings().model_copy(
        update={"signup_limit_per_ip_per_hour": 1, "signup_limit_per_address_per_hour": 0}
    )
    app.dependency_overrides[get_settings] = lambda: settings
    headers = {"Accept-Language": ACCEPT[language]}
    assert (
        client.post("/subscribe", data={"email": "a@example.com"}, headers=headers).status_code
        == 202
    )
    limited = client.post("/subscribe", data={"email": "b@example.com"}, headers=headers)
    again_later = {
        "en": "Please try again later",
        "pt": "Tente novamente mais tarde",
        "zh": "请稍后再试",
    }
    assert limited.status_code == 429 and "retry-after" in limited.headers
    assert in_language(limited.text, language, again_later)
    # JSON callers are programs: English.
    as_json = client.post("/subscribe", json={"email": "c@example.com"}, headers=headers)
    assert as_json.status_code == 429 and "too many signups" in as_json.json()["detail"]

    app.dependency_overrides.clear()
    app.state.queue = BrokenQueue()
    unavailable = client.post("/subscribe", data={"email": "d@example.com"}, headers=headers)
    assert unavailable.status_code == 503
    assert in_language(unavailable.text, language, again_later)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_pages_of_a_reader_links_speak_their_stored_language(
    client: TestClient, language: str
) -> None:
    reader = add_reader("ana@example.com", confirmed=False, language=language)
    # The browser asks for another language, and has the switcher's cookie for it too:
    # the reader's own choice wins on the pages of their links.
    other = "en" if language != "en" else "zh"
    client.cookies.set("lang", other)
    headers = {"Accept-Language": ACCEPT[other]}

    confirmed = client.get(f"/confirm/{link_token(Purpose.CONFIRM, reader)}", headers=headers)
    assert confirmed.status_code == 200 and in_language(confirmed.text, language, CONFIRMED)
    # No switcher on a reader's own page.
    assert "?lang=" not in confirmed.text

    key = get_settings().secret_key
    asked = client.post(
        f"/preferences/{make_reader_token(key, Purpose.PREFERENCES, reader, 0)}/data",
        headers=headers,
    )
    assert asked.status_code == 200 and in_language(asked.text, language, CHECK_YOUR_INBOX)
    # The link's lifetime in words of the language, by Babel.
    assert get_settings().data_link_max_age_seconds == 3600
    assert {"en": "1 hour", "pt": "1 hora", "zh": "1小时"}[language] in asked.text

    unsubscribe = f"/unsubscribe/{link_token(Purpose.UNSUBSCRIBE, reader)}"
    assert f"<html {LANG[language]}>" in client.get(unsubscribe, headers=headers).text
    left = client.post(unsubscribe, headers={**headers, "Accept": "text/html"})
    assert left.status_code == 200 and in_language(left.text, language, UNSUBSCRIBED)

    erase = f"/erase/{make_reader_token(key, Purpose.ERASE, reader, 0)}"
    assert f"<html {LANG[language]}>" in client.get(erase, headers=headers).text
    erased = client.post(erase, headers=headers)
    # The reader is gone, and their language was read before: the last page is in it.
    assert erased.status_code == 200 and in_language(erased.text, language, ERASED)


def sent_digest(article_ids: list[int], language: str) -> int:
    now = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
    with db.session_scope() as session:
        digest = Digest(
            newsletter_id=get_by_slug(session, "daily").id,
            state=DigestState.SENT,
            since=now - timedelta(days=1),
            until=now,
            started_at=now,
        )
        session.add(digest)
        session.flush()
        session.add(
            DigestVariant(digest_id=digest.id, key="k", language=language, article_ids=article_ids)
        )
        return digest.id


@pytest.mark.parametrize(
    ("language", "dateline", "published"),
    [
        (
            "pt",
            "Resumo diário · 26 de novembro de 2026",
            'Publicado em <time datetime="2026-11-26T23:00:00+00:00">26 de novembro de 2026, '
            "23:00 · Europe/Lisbon (UTC+0)</time>",
        ),
        (
            "zh",
            "每日摘要 · 2026年11月26日",
            '发布于 <time datetime="2026-11-26T23:00:00+00:00">2026年11月26日 23:00 · '
            "Europe/Lisbon (UTC+0)</time>",
        ),
        (
            "en",
            "Daily digest · November 26, 2026",
            'Published <time datetime="2026-11-26T23:00:00+00:00">November 26, 2026, 11:00',
        ),
    ],
)
def test_the_article_page_and_the_web_copy_of_a_digest_speak_their_own_language(
    client: TestClient, language: str, dateline: str, published: str
) -> None:
    story = add_article("Macau", language=language, body="Um.\n\nDois.")
    with db.session_scope() as session:
        article = session.get(Article, story)
        assert article is not None
        article.published_at = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
        slug = article.slug
    # Whatever the visitor's browser asks for: the page is in the article's language.
    other = "en" if language != "en" else "zh"
    page = client.get(f"/articles/{slug}", headers={"Accept-Language": ACCEPT[other]})
    assert page.status_code == 200
    assert f"<html {LANG[language]}>" in page.text and FOOTER[language] in page.text
    # Written by Babel, on the newsletter's clock (an anonymous visitor), the zone named.
    assert get_settings().default_time_zone == "Europe/Lisbon"
    assert published in page.text
    assert "Europe/Lisbon (UTC+0)" in page.text

    digest = sent_digest([story], language)
    copy = client.get(f"/digests/{digest}", headers={"Accept-Language": ACCEPT[other]})
    assert copy.status_code == 200
    assert f"<html {LANG[language]}" in copy.text
    assert dateline in copy.text


def test_newsletter_names_follow_the_reader_language(client: TestClient) -> None:
    with db.session_scope() as session:
        daily = get_by_slug(session, "daily")
        # The default newsletter is created with its Portuguese and Chinese names.
        assert newsletter_text(daily, "pt").name == "Resumo diário"
        assert newsletter_text(daily, "zh").name == "每日摘要"
        assert newsletter_text(daily, "en").name == "Daily digest"
        newsletters.translate_newsletter(
            session, slug="daily", descriptions={"zh": "每天早上的新闻"}
        )
    with db.session_scope() as session:
        daily = get_by_slug(session, "daily")
        assert newsletter_text(daily, "zh") == ("每日摘要", "每天早上的新闻")
        assert newsletter_text(daily, "pt").description == daily.description  # its own

    readers = {
        language: add_reader(f"{language}@example.com", confirmed=False, language=language)
        for language in LANGUAGES
    }
    names = {"pt": "“Resumo diário”", "zh": "“每日摘要”", "en": "“Daily digest”"}
    for language, reader in readers.items():
        with db.session_scope() as session:
            message = notices.confirmation_message(
                session, subscriber_id=reader, settings=get_settings()
            )
        assert message is not None
        parsed = message_from_bytes(message.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        body = parsed.get_body(("plain",))
        assert body is not None
        assert names[language] in body.get_content(), language

    # On a page: the signup page's list, through the pages' newsletter_text.
    from newsletter.web.deps import templates

    rendered = templates.env.from_string(
        "{% for n in newsletters %}{{ newsletter_text(n).name }}{% endfor %}"
    )
    with db.session_scope() as session:
        listed = newsletters.list_newsletters(session)
        for language, name in names.items():
            assert rendered.render(newsletters=listed, language=language) == name.strip("“”")
