"""The admin dashboard's door: sign in with the token, a signed session, CSRF, sign out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.app import admin_sessions
from newsletter.core import db
from newsletter.core.clock import utcnow
from newsletter.core.config import get_settings
from newsletter.core.models import AdminSession
from newsletter.web.admin import auth
from newsletter.web.app import create_app


@pytest.fixture
def client(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    # Wrong tokens are slowed by a second in production; here a hundredth.
    fast = get_settings().model_copy(update={"admin_signin_delay_seconds": 0.01})
    monkeypatch.setattr(auth, "get_settings", lambda: fast)
    with TestClient(create_app(), base_url="http://testserver") as test_client:
        yield test_client


def login_token(client: TestClient) -> str:
    page = client.get("/admin/login")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def sign_in(client: TestClient, token: str | None = None) -> str:
    """Sign in; the CSRF token of the new session (read from the dashboard's sign-out form)."""
    response = client.post(
        "/admin/login",
        data={
            "token": token or get_settings().admin_token,
            "csrf_token": login_token(client),
            "next": "/admin",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    home = client.get("/admin")
    assert home.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    assert match
    return match.group(1)


def session_rows() -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(AdminSession)) or 0


def test_pages_need_a_sign_in(client: TestClient) -> None:
    response = client.get("/admin?days=7&q=ana", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=/admin%3Fdays%3D7%26q%3Dana"
    script = client.get("/admin", headers={"Accept": "application/json"})
    assert script.status_code == 401 and "Sign in" in script.json()["detail"]


def test_the_right_token_opens_a_strict_httponly_session(client: TestClient) -> None:
    response = client.post(
        "/admin/login",
        data={
            "token": get_settings().admin_token,
            "csrf_token": login_token(client),
            "next": "/admin/digests",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/admin/digests"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(auth.SESSION_COOKIE)
    )
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/admin"} <= attributes
    assert session_rows() == 1
    home = client.get("/admin")
    assert home.status_code == 200 and "Sign out" in home.text
    assert home.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'self'" in home.headers["content-security-policy"]


def test_a_wrong_token_is_refused_slowly_and_opens_nothing(client: TestClient) -> None:
    response = client.post(
        "/admin/login",
        data={"token": "not-the-token", "csrf_token": login_token(client)},
        follow_redirects=False,
    )
    assert response.status_code == 401
    assert "That is not the admin token." in response.text
    assert auth.SESSION_COOKIE not in response.cookies
    assert session_rows() == 0
    assert client.get("/admin", follow_redirects=False).status_code == 303
    # Each further wrong try of the client's window waits twice as long, up to a minute.
    delays = [auth.signin_delay(1.0, attempt) for attempt in range(1, 9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_sign_in_without_its_form_token_is_refused(client: TestClient) -> None:
    client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"token": get_settings().admin_token, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 403 and "expired" in response.text
    assert session_rows() == 0


def test_sign_in_never_sends_anyone_to_another_site(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/admin", "/\\evil.example", "/other"):
        response = client.post(
            "/admin/login",
            data={
                "token": get_settings().admin_token,
                "csrf_token": login_token(client),
                "next": target,
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == "/admin", target


def test_forms_without_the_csrf_token_change_nothing(client: TestClient) -> None:
    csrf = sign_in(client)
    refused = client.post("/admin/logout", data={}, follow_redirects=False)
    assert refused.status_code == 403 and "did not come from this dashboard" in refused.text
    wrong = client.post("/admin/logout", data={"csrf_token": csrf[:-1] + "x"})
    assert wrong.status_code == 403
    assert session_rows() == 1 and client.get("/admin").status_code == 200


def test_signing_out_ends_the_session_wherever_its_cookie_went(client: TestClient) -> None:
    csrf = sign_in(client)
    stolen = client.cookies.get(auth.SESSION_COOKIE)
    assert stolen
    response = client.post("/admin/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/admin/login"
    assert session_rows() == 0
    client.cookies.set(auth.SESSION_COOKIE, stolen, path="/admin")
    assert client.get("/admin", follow_redirects=False).status_code == 303
    assert "You are signed out." in client.get("/admin/login").text


def test_a_tampered_expired_or_old_token_session_opens_nothing(client: TestClient) -> None:
    sign_in(client)
    cookie = client.cookies.get(auth.SESSION_COOKIE)
    assert cookie
    flipped = cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]
    client.cookies.set(auth.SESSION_COOKIE, flipped, path="/admin")
    assert client.get("/admin", follow_redirects=False).status_code == 303

    settings = get_settings()
    with db.session_scope() as session:
        expired = admin_sessions.sign_in(
            session,
            given_token=settings.admin_token,
            admin_token=settings.admin_token,
            lifetime=timedelta(hours=1),
            now=utcnow() - timedelta(hours=2),
        )
        assert (
            admin_sessions.find(session, expired.session_id, admin_token=settings.admin_token)
            is None
        )
        live = admin_sessions.sign_in(
            session,
            given_token=settings.admin_token,
            admin_token=settings.admin_token,
            lifetime=timedelta(hours=1),
        )
        assert admin_sessions.find(session, live.session_id, admin_token=settings.admin_token)
        # A new admin token ends the sessions opened with the old one.
        assert admin_sessions.find(session, live.session_id, admin_token="rotated") is None
        with pytest.raises(admin_sessions.WrongToken):
            admin_sessions.sign_in(
                session, given_token="", admin_token="", lifetime=timedelta(hours=1)
            )
