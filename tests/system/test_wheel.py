"""The built wheel stands alone: installed outside the checkout, the service runs from elsewhere.

A slow system test: it builds the sdist and, from it, the wheel (as `python -m build` does),
installs the wheel into a fresh virtualenv that borrows this one's dependencies, and runs
`newsletter init`, `newsletter digest preview` and `newsletter up` from an empty folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.embedded import serving

pytestmark = pytest.mark.slow

# What the sdist's build must never see: the checkout's own state and caches.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".hypothesis", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


@dataclass(frozen=True)
class Installed:
    python: Path
    command: Path
    folder: Path  # an empty folder outside the checkout, where the commands run
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.command), *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist, built from a copy of the checkout, and the wheel built from the sdist."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = work / "dist"
    build_sdist = (
        "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
    )
    subprocess.run(
        [sys.executable, "-c", build_sdist, str(dist)],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (sdist,) = dist.glob("newsletter-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    (unpacked,) = (work / "unpacked").iterdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), unpacked],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("newsletter-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def installed(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel in a new virtualenv; its dependencies are this environment's (no download)."""
    _, wheel = built
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(home)
    python = home / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Appended after the new environment's own site-packages: the wheel's package comes first.
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel],
        check=True,
        capture_output=True,
    )
    # No NEWSLETTER_* setting at all, and nothing that would import the checkout instead.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NEWSLETTER_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    folder = tmp_path_factory.mktemp("elsewhere")
    return Installed(python, home / "bin" / "newsletter", folder, env)


def test_the_wheel_carries_the_templates_seeds_catalogs_and_migrations(
    built: tuple[Path, Path],
) -> None:
    sdist, wheel = built
    names = set(wheel_names(wheel))
    for needed in (
        "newsletter/templates/email/_base/body.html",
        "newsletter/templates/email/confirmation/subject.txt",
        "newsletter/templates/pages/signup.html",
        "newsletter/templates/pages/admin/static/progress.js",
        "newsletter/locales/pt/LC_MESSAGES/messages.po",
        "newsletter/locales/zh/LC_MESSAGES/messages.po",
        "newsletter/core/migrations/env.py",
        "newsletter/core/migrations/script.py.mako",
        "newsletter/core/migrations/versions/0001_initial_schema.py",
        "newsletter/py.typed",
    ):
        assert needed in names, needed
    assert any(name.startswith("newsletter/seeds/") for name in names)
    # Every template and seed of the checkout, none left behind.
    for top in ("templates", "seeds"):
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                assert f"newsletter/{path.relative_to(ROOT).as_posix()}" in names, path
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any("/templates/email/digest/body.html" in name for name in members)


def test_installed_it_finds_its_files_inside_itself(installed: Installed) -> None:
    where = subprocess.run(
        [
            installed.python,
            "-c",
            "import newsletter.core.config as c; print(c.__file__, c.TEMPLATES_DIR, c.SEEDS_DIR, "
            "c.CHECKOUT_DIR, c.Settings().var_dir, sep='\\n')",
        ],
        cwd=installed.folder,
        env=installed.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    module, templates, seeds, checkout, var = where
    package = Path(module).parent.parent
    assert not Path(module).is_relative_to(ROOT), "the checkout was imported, not the wheel"
    assert Path(templates) == package / "templates" and Path(seeds) == package / "seeds"
    assert checkout == "None"
    assert Path(var) == installed.folder.resolve() / "var"


def test_init_and_preview_run_from_another_folder(installed: Installed) -> None:
    init = installed.run("init")
    assert init.returncode == 0, init.stderr
    assert "imported 1 seed article" in init.stdout and "database ready" in init.stdout
    assert (installed.folder / "var" / "newsletter.db").is_file()

    preview = installed.run("digest", "preview", "--format", "html")
    assert preview.returncode == 0, preview.stderr
    # The seed article in the digest's own layout (templates/email/digest on _base).
    assert "Putin wants greater cooperation" in preview.stdout
    assert "<html" in preview.stdout.lower() and "unsubscribe" in preview.stdout.lower()


def test_up_serves_the_signup_page(installed: Installed) -> None:
    installed.run("init", "--no-seeds")
    with running_up(installed) as base:
        page = httpx.get(f"{base}/", timeout=5)
        assert page.status_code == 200 and 'name="email"' in page.text
        # The dashboard's static files come from the package too.
        script = httpx.get(f"{base}/admin/static/progress.js", timeout=5)
        assert script.status_code == 200


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@contextmanager
def running_up(installed: Installed) -> Iterator[str]:
    """`newsletter up` of the installed wheel on free ports; its base URL; stopped after."""
    port = free_port()
    env = {
        **installed.env,
        "NEWSLETTER_SINK_PORT": str(free_port()),
        "NEWSLETTER_BOUNCE_PORT": str(free_port()),
    }
    with serving(
        [str(installed.command), "up", "--port", str(port)],
        cwd=installed.folder,
        env=env,
        port=port,
        log_path=installed.folder / "up.log",
    ) as base:
        yield base
