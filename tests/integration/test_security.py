"""Hostile use of the service's doors: forged links, missing credentials, forged forms,
signup floods, header injection, stored scripts, SQL in search fields, unsigned webhooks.

Against the real databases (SQLite and PostgreSQL) and Redis. Some doors are tested in
depth elsewhere and only swept here: tokens in tests/unit/core/test_tokens.py, the
dashboard's sign-in in tests/integration/test_admin_auth.py, each webhook's signatures in
tests/integration/test_webhooks.py, and the inbound SMTP receiver refusing to relay in
tests/integration/test_bounces.py (test_the_receiver_is_no_open_relay_and_refuses_oversize_mail).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, NamedTuple

import fastapi.routing
import pytest
import redis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.app import admin_sessions
from newsletter.articles.store import parse_markdown, store_article
from newsletter.core import db
from newsletter.core.clock import utcnow
from newsletter.core.config import Settings, get_settings
from newsletter.core.models import (
    Article,
    Digest,
    DigestState,
    DigestVariant,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.core.tokens import Purpose, make_reader_token, make_token
from newsletter.digests import render as digests
from newsletter.subscribers import notices, signup_limits, suppressions
from newsletter.subscribers.newsletters import get_by_slug
from newsletter.web.admin import auth
from newsletter.web.app import create_app
from tests.factories import add_reader, link_token
from tests.fakes import RecordingQueue

SCRIPT = "<script>alert(1)</script>"
BROKEN_OUT = '"><img src=x onerror=alert(1)>'
HOSTILE = f"{SCRIPT}{BROKEN_OUT}"
# What must never reach a page or an email's HTML unescaped.
RAW_MARKUP = ("<script>alert", "<img src=x")


@pytest.fixture
def app(clean_db: str, redis_broker: str) -> Any:
    # Signup counts start afresh for each test (this run's Redis database is its own).
    signup_limits._local.clear()
    with redis.Redis.from_url(redis_broker) as store:
        for key in store.scan_iter(
            f"{get_settings().redis_key_prefix}{signup_limits.KEY_PREFIX}:*"
        ):
            store.delete(key)
    return create_app()


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def sign_in(client: TestClient) -> str:
    """Sign the client in to the dashboard; the session's CSRF token."""
    login = client.get("/admin/login")
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert form_token
    response = client.post(
        "/admin/login",
        data={"token": get_settings().admin_token, "csrf_token": form_token.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin").text)
    assert csrf
    return csrf.group(1)


def count(model: Any) -> int:
    with db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


class Route(NamedTuple):
    path: str
    route: APIRoute  # the route as written, with its dependencies and parameters


def routes(app: Any, prefix: str, method: str) -> list[Route]:
    """The app's routes under prefix that answer method, with their full paths."""
    # FastAPI 0.165 keeps included routers as branches; iter_route_contexts flattens them.
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:
        found = [(r.path, set(r.methods), r) for r in app.routes if isinstance(r, APIRoute)]
    else:
        found = [
            (str(c.path), set(c.methods or ()), c.original_route)
            for c in iterate(app.routes)
            if isinstance(c.original_route, APIRoute)
        ]
    return [
        Route(path, route)
        for path, methods, route in found
        if path.startswith(prefix) and method in methods
    ]


def concrete(path: str) -> str:
    """A path with each parameter filled: the doors are checked before the parameters."""
    return re.sub(r"\{[^}]+\}", "1", path)


# --- reader tokens ---------------------------------------------------------------------

READER_ROUTES = [
    ("GET", "/confirm/{t}", Purpose.CONFIRM),
    ("GET", "/unsubscribe/{t}", Purpose.UNSUBSCRIBE),
    ("POST", "/unsubscribe/{t}", Purpose.UNSUBSCRIBE),
    ("GET", "/preferences/{t}", Purpose.PREFERENCES),
    ("POST", "/preferences/{t}", Purpose.PREFERENCES),
    ("POST", "/preferences/{t}/data", Purpose.PREFERENCES),
    ("POST", "/preferences/{t}/erase", Purpose.PREFERENCES),
    ("GET", "/my-data/{t}", Purpose.EXPORT),
    ("GET", "/erase/{t}", Purpose.ERASE),
    ("POST", "/erase/{t}", Purpose.ERASE),
]


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def flipped_bits(token: str) -> Iterator[str]:
    """The token with one bit of its decoded bytes flipped, at each character in turn.

    The highest of a base64 character's six bits is always data (a trailing character's
    lowest bits may be padding a decoder ignores, which would change nothing).
    """
    for position, char in enumerate(token):
        if char in B64:
            flipped = B64[B64.index(char) ^ 32]
            yield token[:position] + flipped + token[position + 1 :]


def test_reader_links_work_only_for_their_purpose_and_unaltered(client: TestClient) -> None:
    reader = add_reader("ana@example.com", name="Ana")
    for method, path, purpose in READER_ROUTES:
        for other in Purpose:
            if other is purpose:
                continue
            wrong = link_token(other, reader)
            response = client.request(method, path.format(t=wrong), data={"confirm": "yes"})
            assert response.status_code == 400, (method, path, other)
        token = link_token(purpose, reader)
        for forged in flipped_bits(token):
            response = client.request(method, path.format(t=forged), data={"confirm": "yes"})
            assert response.status_code == 400, (method, path, forged)
    with db.session_scope() as session:
        stored = session.get(Subscriber, reader)
        assert stored is not None and stored.status == SubscriberStatus.ACTIVE
        assert stored.name == "Ana"


def test_a_readers_link_opens_only_that_readers_data(client: TestClient) -> None:
    ana = add_reader("ana@example.com", name="Ana")
    add_reader("rui@example.com", name="Rui")
    token = make_reader_token(get_settings().secret_key, Purpose.EXPORT, ana, 0)
    data = client.get(f"/my-data/{token}")
    assert data.status_code == 200
    assert "ana@example.com" in data.text and "rui@example.com" not in data.text
    page = client.get(
        f"/preferences/{make_token(get_settings().secret_key, Purpose.PREFERENCES, ana)}"
    )
    assert "rui@example.com" not in page.text and "Rui" not in page.text


# --- the admin API and the dashboard ---------------------------------------------------

WRONG_AUTHORIZATIONS: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": "Basic {token}"},
    {"Authorization": "Bearer {token}x"},
    {"Authorization": "Bearer {prefix}"},
]


def test_every_admin_api_route_refuses_missing_and_wrong_tokens(
    app: Any, client: TestClient
) -> None:
    token = get_settings().admin_token
    api = [(m, r.path) for m in ("GET", "POST") for r in routes(app, "/api/", m)]
    assert len(api) >= 5, api  # the articles and digests APIs
    before = (count(Article), count(Digest))
    for method, path in api:
        for headers in WRONG_AUTHORIZATIONS:
            sent = {k: v.format(token=token, prefix=token[:-1]) for k, v in headers.items()}
            response = client.request(method, concrete(path), headers=sent, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
    assert (count(Article), count(Digest)) == before


def test_every_dashboard_page_refuses_missing_forged_and_expired_sessions(
    app: Any, client: TestClient
) -> None:
    pages = [r.path for r in routes(app, "/admin", "GET") if r.path != "/admin/login"]
    assert len(pages) >= 10, pages
    settings = get_settings()
    with db.session_scope() as session:
        expired = admin_sessions.sign_in(
            session,
            given_token=settings.admin_token,
            admin_token=settings.admin_token,
            lifetime=timedelta(hours=1),
            now=utcnow() - timedelta(hours=2),
        )
    cookies: list[str | None] = [
        None,
        "forged",
        auth._cookie_serializer(settings).dumps("a-session-that-never-was"),
        auth._cookie_serializer(settings).dumps(expired.session_id),
        # The right session id signed with another key.
        auth._cookie_serializer(settings.model_copy(update={"secret_key": "x" * 40})).dumps(
            expired.session_id
        ),
    ]
    for cookie in cookies:
        client.cookies.clear()
        if cookie is not None:
            client.cookies.set(auth.SESSION_COOKIE, cookie, path="/admin")
        for path in pages:
            response = client.get(concrete(path), follow_redirects=False)
            assert response.status_code == 303, (path, cookie)
            assert response.headers["location"].startswith("/admin/login")
            script = client.get(concrete(path), headers={"Accept": "application/json"})
            assert script.status_code == 401, (path, cookie)


def test_every_dashboard_form_refuses_a_request_without_its_csrf_token(
    app: Any, client: TestClient
) -> None:
    # Every POST under /admin, found from the app itself: a new form without the CSRF
    # dependency fails here. The sign-in form has its own (tests/test_admin_auth.py).
    forms = [r for r in routes(app, "/admin", "POST") if r.path != "/admin/login"]
    assert len(forms) >= 12, [r.path for r in forms]
    csrf = sign_in(client)
    before = (count(Newsletter), count(Article), count(Subscriber), count(Suppression))
    for route in forms:
        for data in ({"x": "1"}, {"csrf_token": ""}, {"csrf_token": csrf[:-1]}):
            response = client.post(concrete(route.path), data=data, follow_redirects=False)
            assert response.status_code == 403, (route.path, data, response.status_code)
        wrong_header = client.post(
            concrete(route.path), headers={"X-CSRF-Token": "forged"}, follow_redirects=False
        )
        assert wrong_header.status_code == 403, route.path
    assert (count(Newsletter), count(Article), count(Subscriber), count(Suppression)) == before
    assert client.get("/admin").status_code == 200  # still signed in: nothing was done


# --- signup limits ---------------------------------------------------------------------


def limited_app(app: Any, **limits: int) -> Settings:
    settings = get_settings().model_copy(
        update={"signup_limit_per_ip_per_hour": 0, "signup_limit_per_address_per_hour": 0, **limits}
    )
    app.dependency_overrides[get_settings] = lambda: settings
    return settings


def comparable(response: Any) -> tuple[int, str, bool]:
    """What a client could tell apart: status, body, whether a Retry-After came."""
    return response.status_code, response.text, "retry-after" in response.headers


def retry_after_alike(first: Any, second: Any) -> bool:
    """The same wait, give or take the second that may tick between the two requests."""
    return abs(int(first.headers["retry-after"]) - int(second.headers["retry-after"])) <= 1


def test_signups_from_one_client_address_are_limited_alike_for_every_address(
    app: Any, client: TestClient
) -> None:
    limited_app(app, signup_limit_per_ip_per_hour=3)
    app.state.queue = queue = RecordingQueue()
    add_reader("known@example.com")
    for n in range(3):
        assert client.post("/subscribe", json={"email": f"r{n}@example.com"}).status_code == 202
    known = client.post("/subscribe", json={"email": "known@example.com"})
    unknown = client.post("/subscribe", json={"email": "nobody-yet@example.com"})
    assert known.status_code == 429 and 0 < int(known.headers["retry-after"]) <= 3600
    # Refused the same whether the address is a reader's or not: nothing tells them apart.
    assert comparable(known) == comparable(unknown)
    assert retry_after_alike(known, unknown)
    form_known = client.post("/subscribe", data={"email": "known@example.com"})
    form_unknown = client.post("/subscribe", data={"email": "nobody-yet@example.com"})
    assert form_known.status_code == 429 and "try again later" in form_known.text
    assert comparable(form_known) == comparable(form_unknown)
    assert retry_after_alike(form_known, form_unknown)
    # The three let through are handed to a worker; the refused ones to nobody.
    assert [job.task for job in queue.jobs] == ["newsletter.sign_up"] * 3


def test_signups_for_one_address_are_limited_from_any_client_address(app: Any) -> None:
    settings = limited_app(app, signup_limit_per_address_per_hour=2)
    for n, host in enumerate(("198.51.100.1", "198.51.100.2", "198.51.100.3")):
        with TestClient(app, client=(host, 5000 + n)) as from_host:
            response = from_host.post("/subscribe", json={"email": "Ana@Example.com"})
            assert response.status_code == (202 if n < 2 else 429), host
    # The same address written otherwise is the same address.
    again = signup_limits.check_signup(settings, ip=None, email=" ana@EXAMPLE.com ")
    assert again is not None and again.by == "address"
    assert signup_limits.check_signup(settings, ip=None, email="rui@example.com") is None


def test_the_counts_are_kept_in_redis_under_hashed_keys(app: Any, client: TestClient) -> None:
    settings = limited_app(
        app, signup_limit_per_ip_per_hour=50, signup_limit_per_address_per_hour=50
    )
    assert settings.uses_redis
    client.post("/subscribe", json={"email": "secret.reader@example.com"})
    with redis.Redis.from_url(settings.broker_url) as store:
        keys = [
            k.decode()
            for k in store.keys(f"{settings.redis_key_prefix}{signup_limits.KEY_PREFIX}:*")
        ]
        fresh = [k for k in keys if store.ttl(k) > 3000]
        counted_once = [k for k in fresh if store.get(k) == b"1"]
    assert any(":ip:" in k for k in fresh) and any(":address:" in k for k in counted_once)
    assert not any("secret" in k or "example" in k or "testclient" in k for k in keys)


def test_without_redis_the_limits_are_counted_in_the_process(app: Any) -> None:
    settings = get_settings().model_copy(
        update={
            "broker_url": "sqla+sqlite:///nowhere.db",
            "signup_limit_per_ip_per_hour": 2,
            "signup_limit_per_address_per_hour": 0,
        }
    )
    assert not settings.uses_redis
    outcomes = [
        signup_limits.check_signup(settings, ip="203.0.113.5", email=f"r{n}@example.com")
        for n in range(3)
    ]
    assert outcomes[:2] == [None, None] and outcomes[2] is not None
    assert signup_limits.check_signup(settings, ip="203.0.113.6", email="x@example.com") is None


def test_a_limit_of_zero_counts_nothing(app: Any, client: TestClient) -> None:
    limited_app(app)
    for n in range(30):
        response = client.post("/subscribe", json={"email": "same@example.com", "name": str(n)})
        assert response.status_code == 202


# --- header injection ------------------------------------------------------------------

INJECTED = "Ana\r\nBcc: victim@example.net\r\nX-Injected: yes"


def hostile_article(now: datetime) -> Article:
    parsed = parse_markdown(
        f"---\ntitle: '{SCRIPT} {BROKEN_OUT.replace(chr(39), '')} Macau'\n"
        f"published_at: {now.isoformat()}\nlanguage: en\n---\n"
        f"{HOSTILE} The bridge reopened today.\n\n{HOSTILE} Second paragraph.\n",
        source="hostile.md",
    )
    with db.session_scope() as session:
        article, _ = store_article(session, parsed, now=now)
        session.expunge(article)
    return article


def reader_with_name(email: str, name: str) -> int:
    reader = add_reader(email)
    # Straight into the table: the signup form refuses line breaks, an import might not.
    with db.session_scope() as session:
        stored = session.get(Subscriber, reader)
        assert stored is not None
        stored.name = name
    return reader


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def assert_no_injected_header(data: bytes) -> None:
    message = parsed(data)
    names = {name.lower() for name in message}
    assert "bcc" not in names and "x-injected" not in names, names
    head = data.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"(?mi)^(bcc|x-injected):", head)


def test_line_breaks_in_a_name_or_subject_never_make_a_header(client: TestClient) -> None:
    now = datetime.now(UTC)
    hostile_article(now)
    reader = reader_with_name("ana@example.com", INJECTED)
    settings = get_settings()
    with db.session_scope() as session:
        preview = digests.preview(
            session,
            newsletter_slug="daily",
            settings=settings,
            subscriber_email="ana@example.com",
            subject="News\r\nBcc: victim@example.net\r\nX-Injected: yes",
            since=now - timedelta(days=1),
            now=now + timedelta(minutes=1),
        )
        welcome = notices.welcome_message(
            session,
            subscriber_id=reader,
            newsletter_ids=[get_by_slug(session, "daily").id],
            settings=settings,
        )
    assert welcome is not None
    for data in (preview.message.data, welcome.data):
        assert_no_injected_header(data)
        # The name may read oddly; it names no one else.
        to = parsed(data)["To"]
        assert [a.addr_spec for a in to.addresses] == ["ana@example.com"]


# --- stored scripts --------------------------------------------------------------------


def assert_escaped(text: str, where: str) -> None:
    for raw in RAW_MARKUP:
        assert raw not in text, f"{raw!r} unescaped in {where}"


def html_parts(data: bytes) -> list[str]:
    return [
        part.get_content() for part in parsed(data).walk() if part.get_content_type() == "text/html"
    ]


def test_hostile_text_is_escaped_on_every_page_and_in_every_email(client: TestClient) -> None:
    now = datetime.now(UTC)
    article = hostile_article(now)
    reader = reader_with_name("ana@example.com", HOSTILE)
    settings = get_settings()
    with db.session_scope() as session:
        newsletter = get_by_slug(session, "daily")
        digest = Digest(
            newsletter_id=newsletter.id,
            state=DigestState.SENT,
            subject=HOSTILE,
            since=now - timedelta(days=1),
            until=now,
            started_at=now,
        )
        session.add(digest)
        session.flush()
        session.add(
            DigestVariant(
                digest_id=digest.id, key="k" * 64, language="en", article_ids=[article.id]
            )
        )
        digest_id = digest.id
        preview = digests.preview(
            session,
            newsletter_slug="daily",
            settings=settings,
            subscriber_email="ana@example.com",
            subject=HOSTILE,
            since=now - timedelta(days=1),
            now=now + timedelta(minutes=1),
        )
        welcome = notices.welcome_message(
            session, subscriber_id=reader, newsletter_ids=[newsletter.id], settings=settings
        )
    assert welcome is not None
    for name, data in (("digest", preview.message.data), ("welcome", welcome.data)):
        parts = html_parts(data)
        assert parts, name
        for html in parts:
            assert_escaped(html, f"the {name} email")
            assert "&lt;script&gt;" in html, name

    preferences = make_token(settings.secret_key, Purpose.PREFERENCES, reader)
    reader_pages = [
        f"/articles/{article.slug}",
        f"/digests/{digest_id}",
        f"/preferences/{preferences}",
    ]
    for path in reader_pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert_escaped(response.text, path)
        assert "&lt;script&gt;" in response.text, path

    sign_in(client)
    admin_pages = [
        "/admin",
        "/admin/articles",
        "/admin/subscribers",
        f"/admin/subscribers/{reader}",
        "/admin/subscribers?q=%3Cscript%3E",
        "/admin/digests",
        f"/admin/digests/{digest_id}",
        f"/admin/digests/{digest_id}/preview/email",
        "/admin/suppressions?q=%3Cscript%3Ealert(1)%3C/script%3E",
    ]
    for path in admin_pages:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert_escaped(response.text, path)


# --- SQL in search fields --------------------------------------------------------------

INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE subscribers; --",
    '" OR 1=1 --',
    "%' UNION SELECT email_key, email FROM subscribers --",
    "%",
    "_",
    "\\",
    "1) OR (1=1",
]


def text_query_parameters(route: APIRoute) -> list[str]:
    return [
        field.alias
        for field in route.dependant.query_params
        if field.field_info.annotation in (str, str | None)
    ]


def test_sql_in_any_search_field_is_only_text(app: Any, client: TestClient) -> None:
    add_reader("ana@example.com", name="Ana")
    with db.session_scope() as session:
        suppressions.suppress(
            session, email_key="spam@example.com", email="spam@example.com", reason="manual"
        )
    searchable = [
        (route.path, name)
        for prefix in ("/admin", "/api/")
        for route in routes(app, prefix, "GET")
        for name in text_query_parameters(route.route)
        if "{" not in route.path and name != "next"
    ]
    assert ("/admin/subscribers", "q") in searchable  # the suppressions page has no search
    sign_in(client)
    before = (count(Subscriber), count(Suppression), count(Newsletter))
    bearer = {"Authorization": f"Bearer {get_settings().admin_token}"}
    for path, name in searchable:
        for value in INJECTIONS:
            response = client.get(path, params={name: value}, headers=bearer)
            assert response.status_code < 500, (path, name, value)
            if response.status_code == 200:
                # No extra rows: a search for SQL finds no reader and no suppression.
                assert "ana@example.com" not in response.text or value in ("%", "_"), (path, value)
                assert "spam@example.com" not in response.text or value in ("%", "_"), (path, value)
    assert (count(Subscriber), count(Suppression), count(Newsletter)) == before


# --- webhooks --------------------------------------------------------------------------


def test_unsigned_webhooks_of_every_provider_change_nothing(client: TestClient) -> None:
    reader = add_reader("ana@example.com")
    bodies = {
        "/webhooks/ses": {
            "Type": "Notification",
            "Message": '{"notificationType":"Bounce","bounce":{"bounceType":"Permanent",'
            '"bouncedRecipients":[{"emailAddress":"ana@example.com"}]}}',
        },
        "/webhooks/mailgun": {
            "event-data": {
                "event": "failed",
                "severity": "permanent",
                "recipient": "ana@example.com",
            }
        },
        "/webhooks/postmark": {
            "RecordType": "Bounce",
            "Type": "HardBounce",
            "Email": "ana@example.com",
        },
        "/webhooks/sendgrid": [{"event": "bounce", "type": "bounce", "email": "ana@example.com"}],
    }
    for path, body in bodies.items():
        response = client.post(path, json=body)
        assert 400 <= response.status_code < 500, (path, response.status_code)
    with db.session_scope() as session:
        stored = session.get(Subscriber, reader)
        assert stored is not None and stored.status == SubscriberStatus.ACTIVE
    assert count(Suppression) == 0
