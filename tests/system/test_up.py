"""`newsletter up` on the embedded defaults: SQLite, the SQLite broker, the outbox sink."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.embedded import running_up
from tests.factories import run_newsletter


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, str]]]:
    var = tmp_path_factory.mktemp("var")
    # Started as a shell usually starts it: umask 022, var/ readable by every account.
    var.chmod(0o755)
    previous = os.umask(0o022)
    try:
        with running_up(var) as up:
            os.umask(previous)
            yield up.base_url, up.var, up.env
    finally:
        os.umask(previous)


def outbox_messages(var: Path, count: int, timeout: float = 30) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while True:
        files = sorted((var / "outbox").glob("*.eml"))
        if len(files) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert len(files) >= count, f"{len(files)} message(s) in the outbox, expected {count}"
    parsed = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    return sorted(parsed, key=lambda m: m["Date"].datetime)  # type: ignore[no-any-return]


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_a_person_signs_up_confirms_from_the_outbox_and_unsubscribes(
    service: tuple[str, Path, dict[str, str]],
) -> None:
    base, var, env = service
    signup_page = httpx.get(f"{base}/")
    assert signup_page.status_code == 200 and 'name="email"' in signup_page.text

    answer = httpx.post(f"{base}/subscribe", data={"email": "leitor@example.com", "name": "Leitor"})
    assert answer.status_code == 202

    (confirmation,) = outbox_messages(var, 1)
    assert confirmation["To"] == "Leitor <leitor@example.com>"
    confirm_url = re.search(rf"{re.escape(base)}/confirm/\S+", body_text(confirmation))
    assert confirm_url
    assert httpx.get(confirm_url.group(0)).status_code == 200

    welcome = outbox_messages(var, 2)[1]
    one_click = re.search(r"<(http[^>]+/unsubscribe/[^>]+)>", welcome["List-Unsubscribe"])
    assert one_click

    # An editor sends a digest of the seed article; it lands in the outbox too.
    sent = subprocess.run(
        [sys.executable, "-m", "newsletter", "digest", "send", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"state": "scheduled"' in sent.stdout
    digest = outbox_messages(var, 3)[2]
    assert digest["Subject"] == "Putin wants greater cooperation between Russia and North Korea"
    assert "Russian President Vladimir Putin" in body_text(digest)
    assert httpx.post(one_click.group(1), data={"List-Unsubscribe": "One-Click"}).status_code == 200

    shown = subprocess.run(
        [sys.executable, "-m", "newsletter", "subscribers", "show", "leitor@example.com", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"status": "unsubscribed"' in shown.stdout


def test_the_seed_article_is_imported_and_has_a_page(
    service: tuple[str, Path, dict[str, str]],
) -> None:
    base, _, _ = service
    page = httpx.get(
        f"{base}/articles/putin-wants-greater-cooperation-between-russia-and-north-korea"
    )
    assert page.status_code == 200
    assert "Russian President Vladimir Putin today called" in page.text
    assert "Subscribe Plataforma Newsletter" not in page.text


def test_ready_on_the_embedded_defaults_with_the_same_workers_everywhere(
    service: tuple[str, Path, dict[str, str]],
) -> None:
    """The embedded broker carries no ping; the workers' heartbeats say the same thing to
    /readyz, `newsletter status` and the dashboard."""
    base, _, env = service
    response = httpx.get(f"{base}/readyz", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"
    admin = {"Authorization": f"Bearer {admin_token(env)}"}
    named = httpx.get(f"{base}/readyz", headers=admin, timeout=10).json()["checks"]["workers"]
    status = run_newsletter("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    online = [w["name"] for w in json.loads(status.stdout)["workers"] if w["online"]]
    assert online and online == named["workers"]
    with httpx.Client(base_url=base) as browser:
        form = browser.get("/admin/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf
        signed_in = browser.post(
            "/admin/login",
            data={"token": admin_token(env), "csrf_token": csrf.group(1), "next": "/admin"},
        )
        assert signed_in.status_code == 303, signed_in.text
        page = re.sub(r"\s+", " ", browser.get("/admin").text)
    assert f"Workers online</span> <strong>{len(online)}</strong>" in page


def admin_token(env: dict[str, str]) -> str:
    return (Path(env["NEWSLETTER_VAR_DIR"]) / "admin_token").read_text().strip()


def test_a_second_up_in_the_same_folder_says_why_and_fails(
    service: tuple[str, Path, dict[str, str]],
) -> None:
    _, var, env = service
    second = run_newsletter("up", "--port", str(free_port()), env=env)
    assert second.returncode == 1
    [line] = second.stderr.strip().splitlines()
    assert "another `newsletter up`" in line and str(var) in line


def test_a_busy_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_VAR_DIR"] = str(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_newsletter("up", "--port", str(port), env=env)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert f"port {port} on 127.0.0.1 (web) is already in use" in line
    assert not (tmp_path / "newsletter.db").exists()  # nothing was started or made


def test_what_the_service_keeps_in_var_is_its_owners_alone(
    service: tuple[str, Path, dict[str, str]],
) -> None:
    """The database, the broker's, the outbox, metrics and secrets: no other account on the
    machine may read them (the service is started with the usual umask, 022)."""
    _base, var, _env = service
    assert httpx.post(f"{_base}/subscribe", data={"email": "modes@example.com"}).status_code == 202
    outbox_messages(var, 1)
    made = [p for p in var.rglob("*") if p.name != "up.log"]  # up.log is the test's own
    names = {p.relative_to(var).as_posix() for p in made}
    assert {"newsletter.db", "broker.db", "outbox", "secret_key"} <= names
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    readable = [f"{p.relative_to(var)} {stat.S_IMODE(p.stat().st_mode):o}" for p in made]
    assert [line for line, p in zip(readable, made, strict=True) if p.stat().st_mode & 0o077] == []
