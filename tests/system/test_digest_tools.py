"""Editors' tools around the digest: preview (CLI and API), web copy, DKIM, spam score, look."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from newsletter.articles.store import import_paths
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Digest, DigestState
from newsletter.digests import render as digests
from newsletter.email.dkim import DkimSigner
from newsletter.subscribers import store as subscribers
from newsletter.subscribers.newsletters import get_by_slug
from newsletter.web.app import create_app
from tests.conftest import ROOT
from tests.factories import dkim_key

SEEDS = ROOT / "seeds"
REQUIRE = os.environ.get("NEWSLETTER_TEST_REQUIRE_SERVICES") == "1"


@pytest.fixture
def seeded(clean_db: str) -> str:
    """The seed article, published just now, and one confirmed reader."""
    with db.session_scope() as session:
        report = import_paths(session, [SEEDS])
        assert not report.errors
        subscribers.subscribe(
            session,
            subscribers.SignupForm(email="ana@example.com", name="Ana"),
            source="test",
            confirmed=True,
            default_language="en",
            default_time_zone="Europe/Lisbon",
            confirmation_interval=timedelta(minutes=10),
        )
    return clean_db


@pytest.fixture
def client(seeded: str) -> Iterator[TestClient]:
    with TestClient(create_app()) as test_client:
        yield test_client


def seed_digest_eml() -> bytes:
    with db.session_scope() as session:
        result = digests.preview(
            session,
            newsletter_slug="daily",
            settings=get_settings(),
            subscriber_email="ana@example.com",
        )
    return result.message.data


def test_the_api_preview_needs_the_admin_token_and_shows_the_digest(client: TestClient) -> None:
    assert client.get("/api/digests/preview").status_code == 401
    wrong = client.get("/api/digests/preview", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    auth = {"Authorization": f"Bearer {get_settings().admin_token}"}
    html = client.get("/api/digests/preview?subscriber=ana@example.com", headers=auth)
    assert html.status_code == 200
    assert "Putin wants greater cooperation" in html.text and "Hello Ana," in html.text
    text = client.get("/api/digests/preview?format=text", headers=auth)
    assert text.text.startswith("Daily digest")
    eml = client.get("/api/digests/preview?format=eml&subject=Hoje", headers=auth)
    assert message_from_bytes(eml.content, policy=policy.default)["Subject"] == "Hoje"
    missing = client.get("/api/digests/preview?newsletter=weekly", headers=auth)
    assert missing.status_code == 404 and "weekly" in missing.json()["detail"]
    empty = client.get("/api/digests/preview?since=2999-01-01T00:00:00Z", headers=auth)
    assert empty.status_code == 409 and "No article was published" in empty.json()["detail"]


def test_the_web_copy_of_a_sent_digest_has_no_readers_links(client: TestClient) -> None:
    settings = get_settings()
    with db.session_scope() as session:
        newsletter = get_by_slug(session, "daily")
        now = datetime.now(UTC)
        digest = Digest(
            newsletter_id=newsletter.id,
            state=DigestState.SENT,
            since=now - timedelta(days=1),
            until=now,
            started_at=now,
        )
        session.add(digest)
        session.flush()
        reader = subscribers.find_by_email(session, "ana@example.com")
        batch = digests.render_for_readers(
            session, digest=digest, subscribers=[reader], settings=settings
        )
        digest_id = digest.id
    message = message_from_bytes(batch.messages[reader.id].data, policy=policy.default)
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    view = re.search(
        r'href="http://newsletter\.test(/digests/\d+\?variant=\d+)"', str(html_part.get_content())
    )
    assert view, "the digest links to its web copy"
    page = client.get(view.group(1))
    assert page.status_code == 200
    assert "Putin wants greater cooperation" in page.text
    assert "/unsubscribe/" not in page.text and "Hello Ana" not in page.text
    assert client.get(f"/digests/{digest_id + 1000}").status_code == 404


def test_the_cli_preview_writes_eml_and_fails_in_one_line(seeded: str, tmp_path: Path) -> None:
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": seeded}
    out = tmp_path / "nested" / "digest.eml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "newsletter",
            "digest",
            "preview",
            "--subscriber",
            "ana@example.com",
            "--format",
            "eml",
            "-o",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (
        message_from_bytes(out.read_bytes(), policy=policy.default)["To"] == "Ana <ana@example.com>"
    )
    bad = subprocess.run(
        [sys.executable, "-m", "newsletter", "digest", "preview", "--since", "2999-01-01"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1 and "No article was published" in bad.stderr


def test_dkim_signature_verifies_and_covers_the_unsubscribe_headers(seeded: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    record = b"v=DKIM1; k=rsa; p=" + public

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name == b"mail2026._domainkey.plataforma.test." else b""

    signed = DkimSigner(private_key=pem, selector="mail2026", domain="plataforma.test")(
        seed_digest_eml()
    )
    assert dkim.verify(signed, dnsfunc=dns)
    signature = message_from_bytes(signed, policy=policy.default)["DKIM-Signature"]
    signed_headers = re.search(r"h=([^;]+)", str(signature).replace(" ", ""))
    assert signed_headers
    names = signed_headers.group(1).lower().split(":")
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= set(names)
    tampered = signed.replace(b"/unsubscribe/", b"/unsubscribX/", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_spamassassin_scores_the_seed_digest_below_two(seeded: str, tmp_path: Path) -> None:
    if shutil.which("spamassassin") is None:
        if REQUIRE:
            pytest.fail("spamassassin is required in CI (apt-get install spamassassin)")
        pytest.skip("spamassassin is not installed")
    report = subprocess.run(
        ["spamassassin", "-L", "-t"],
        input=seed_digest_eml(),
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    match = re.search(rb"Content analysis details:\s+\((-?[\d.]+) points", report.stdout)
    assert match, report.stdout[-2000:]
    assert float(match.group(1)) < 2.0, report.stdout.decode(errors="replace")[-3000:]


def test_the_screenshot_script_renders_the_digest_to_a_png(seeded: str, tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        if REQUIRE:
            pytest.fail("chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    message = message_from_bytes(seed_digest_eml(), policy=policy.default)
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    html = tmp_path / "digest.html"
    html.write_text(str(part.get_content()))
    png = ROOT / "build" / "digest.png"  # kept for a person to look at; build/ is not committed
    subprocess.run(
        [sys.executable, "scripts/screenshot.py", str(html), str(png), "--height", "1000"],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_a_configured_dkim_key_signs_every_digest(
    seeded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file, public = dkim_key(tmp_path)
    settings = get_settings()
    monkeypatch.setattr(settings, "dkim_key", str(key_file))
    monkeypatch.setattr(settings, "dkim_selector", "s1")
    signed = seed_digest_eml()
    assert signed.startswith(b"DKIM-Signature:")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.plataforma.test."
        return b"v=DKIM1; k=rsa; p=" + public

    assert dkim.verify(signed, dnsfunc=dns)
