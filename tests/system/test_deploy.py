"""The deployment recipes in the repository, tested as far as this machine allows.

systemd units through `systemd-analyze verify`, the nginx example through `nginx -t`, the
Caddyfile through `caddy validate`, the Procfile run under honcho until its web answers and
its worker's heartbeat is online. No container engine runs here: the Containerfile and the
compose file are read by a parser and checked against the repository and the settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from newsletter.cli.main import cli
from newsletter.core.config import Settings, settings_from_files
from tests.conftest import ROOT, free_port, service_missing
from tests.factories import run_newsletter

pytestmark = pytest.mark.slow

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").iterdir())
INSTALLED_AT = "/opt/newsletter/bin/newsletter"


def newsletter_command() -> str:
    found = shutil.which("newsletter", path=str(Path(sys.executable).parent))
    assert found, "the newsletter command is not installed next to this Python"
    return found


def assert_a_newsletter_command(argv: list[str]) -> None:
    """The arguments after `newsletter` name a command and options it takes."""
    assert Path(argv[0]).name == "newsletter", argv
    result = CliRunner().invoke(cli, [*argv[1:], "--help"])
    assert result.exit_code == 0, f"{shlex.join(argv)}: {result.output}"


# --- systemd -------------------------------------------------------------------------


def test_the_systemd_units_verify(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        service_missing("systemd-analyze")
    # Installed elsewhere here than on a server: the command the units run must exist.
    for unit in UNITS:
        text = unit.read_text().replace(INSTALLED_AT, newsletter_command())
        (tmp_path / unit.name).write_text(text)
    # A template is verified through one of its instances.
    shutil.copy(tmp_path / "newsletter-worker@.service", tmp_path / "newsletter-worker@1.service")
    names = [f"./{u.name}" for u in UNITS if "@." not in u.name] + ["./newsletter-worker@1.service"]
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # An unknown key is only a warning (exit 0): nothing at all may be said.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stderr


def test_the_units_run_commands_the_service_has_with_secrets_from_files() -> None:
    for unit in UNITS:
        text = unit.read_text()
        for line in re.findall(r"^ExecStart(?:Pre)?=(.+)$", text, re.MULTILINE):
            assert_a_newsletter_command(shlex.split(line))
        files = dict(re.findall(r"^Environment=(NEWSLETTER_\w+_FILE)=%d/(\w+)$", text, re.M))
        credentials = set(re.findall(r"^LoadCredential=(\w+):", text, re.MULTILINE))
        assert set(files.values()) == credentials, unit.name
        if unit.suffix == ".service":
            assert {"NEWSLETTER_SECRET_KEY_FILE", "NEWSLETTER_DATABASE_URL_FILE"} <= set(files)
            assert "User=newsletter" in text and "NoNewPrivileges=yes" in text
        # Each names a setting that is read from a file.
        assert settings_from_files({key: os.devnull for key in files}).keys() == {
            key.removeprefix("NEWSLETTER_").removesuffix("_FILE").lower() for key in files
        }


# --- Procfile ------------------------------------------------------------------------


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_the_procfile_names_every_part() -> None:
    processes = procfile()
    assert set(processes) == {"web", "worker", "beat", "bounces"}
    for command in processes.values():
        assert_a_newsletter_command(shlex.split(command.replace("${PORT:-8000}", "8000")))


def test_the_procfile_runs_under_honcho(tmp_path: Path) -> None:
    honcho = shutil.which("honcho", path=str(Path(sys.executable).parent))
    if honcho is None:
        pytest.fail("honcho is a dev dependency: pip install -e '.[dev]'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        NEWSLETTER_VAR_DIR=str(tmp_path / "var"),
        NEWSLETTER_BOUNCE_PORT=str(free_port()),
        NEWSLETTER_SINK_PORT=str(free_port()),
    )
    init = run_newsletter("init", "--no-seeds", env=env)
    assert init.returncode == 0, init.stderr
    port = free_port()
    log = tmp_path / "honcho.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [honcho, "-f", str(ROOT / "Procfile"), "-d", str(tmp_path), "start", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        online: list[str] = []
        while time.monotonic() < deadline and not online:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
            except httpx.TransportError:
                healthy = 0
            if healthy == 200:
                status = run_newsletter("status", "--json", env=env)
                workers = json.loads(status.stdout)["workers"] if status.returncode == 0 else []
                online = [w["name"] for w in workers if w["online"]]
            time.sleep(0.5)
        assert online, f"no worker online under honcho:\n{log.read_text()[-3000:]}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise


# --- containers ----------------------------------------------------------------------


def containerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of deploy/Containerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Containerfile").read_text())
    steps = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, arguments = line.strip().partition(" ")
            steps.append((instruction.upper(), arguments.strip()))
    return steps


def test_the_containerfile_builds_from_files_that_exist_and_runs_unprivileged() -> None:
    steps = containerfile()
    known = {"FROM", "WORKDIR", "COPY", "RUN", "USER", "ENV", "EXPOSE", "CMD"}
    assert {instruction for instruction, _ in steps} <= known
    images = [args for instruction, args in steps if instruction == "FROM"]
    required = re.search(
        r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text()
    )
    assert required
    for image in images:
        version = re.search(r"python:(\d+)\.(\d+)", image)
        assert version and tuple(map(int, version.groups())) >= tuple(map(int, required.groups()))
    for instruction, args in steps:
        if instruction == "COPY" and not args.startswith("--from="):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    # Everything the wheel needs is copied into the build stage (setup.py maps these in).
    copied = " ".join(args for instruction, args in steps if instruction == "COPY")
    for needed in ("pyproject.toml", "setup.py", "newsletter", "templates", "seeds"):
        assert needed in copied.split(), needed
    final = steps[[i for i, (ins, _) in enumerate(steps) if ins == "FROM"][-1] :]
    users = [args for instruction, args in final if instruction == "USER"]
    assert users and users[-1] not in {"root", "0"}
    [command] = [json.loads(args) for instruction, args in final if instruction == "CMD"]
    assert_a_newsletter_command(command)


def test_the_compose_file_runs_every_part_on_the_services_it_declares() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"migrate", "web", "worker", "beat", "bounces", "postgres", "redis"}
    ours = {name: s for name, s in services.items() if name not in {"postgres", "redis"}}
    declared_secrets = set(compose["secrets"])
    for name, service in ours.items():
        assert_a_newsletter_command(service["command"])
        environment = service["environment"]
        assert environment["NEWSLETTER_ENVIRONMENT"] == "production", name
        assert environment["NEWSLETTER_BASE_URL"] == "${NEWSLETTER_BASE_URL:-}", name
        assert environment["NEWSLETTER_BROKER_URL"] == "redis://redis:6379/0", name
        files = {k: v for k, v in environment.items() if k.endswith("_FILE")}
        # Each names a text setting, from a secret the file declares and mounts.
        assert settings_from_files(dict.fromkeys(files, os.devnull)).keys() == {
            k.removeprefix("NEWSLETTER_").removesuffix("_FILE").lower() for k in files
        }
        mounted = {f"/run/secrets/{secret}" for secret in service["secrets"]}
        assert set(files.values()) <= mounted and set(service["secrets"]) <= declared_secrets
        for key in environment:
            setting = key.removeprefix("NEWSLETTER_").removesuffix("_FILE").lower()
            assert setting in Settings.model_fields, key
    assert services["migrate"]["command"][:2] == ["newsletter", "init"]
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["deploy"]["replicas"] >= 2 and services["worker"]["stop_grace_period"]
    # The broker is disposable (every delivery is in PostgreSQL): no persistence.
    assert "--appendonly" in services["redis"]["command"]
    assert services["postgres"]["volumes"] and services["postgres"]["healthcheck"]
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")


# --- reverse proxies -------------------------------------------------------------------


def test_the_nginx_example_is_a_valid_configuration(tmp_path: Path) -> None:
    if not shutil.which("nginx"):
        service_missing("nginx")
    certificate, key = self_signed(tmp_path)
    site = (
        (DEPLOY / "proxy" / "nginx.conf")
        .read_text()
        .replace("/etc/letsencrypt/live/news.example.com/fullchain.pem", str(certificate))
        .replace("/etc/letsencrypt/live/news.example.com/privkey.pem", str(key))
    )
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ access_log off; include {tmp_path}/site.conf; }}\n"
    )
    done = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr
    assert "X-Forwarded-For" in site and "X-Forwarded-Proto" in site


def test_the_caddyfile_is_valid(tmp_path: Path) -> None:
    if not shutil.which("caddy"):
        service_missing("caddy")
    done = subprocess.run(
        [
            "caddy",
            "validate",
            "--adapter",
            "caddyfile",
            "--config",
            str(DEPLOY / "proxy" / "Caddyfile"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)},
    )
    assert done.returncode == 0 and "Valid configuration" in done.stdout + done.stderr, (
        done.stdout + done.stderr
    )


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, as files (nginx -t reads them)."""
    from cryptography.hazmat.primitives import serialization

    from tests.providers import make_signer

    signer = make_signer()
    certificate_path, key_path = folder / "cert.pem", folder / "key.pem"
    certificate_path.write_bytes(signer.certificate)
    key_path.write_bytes(
        signer.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_path, key_path
