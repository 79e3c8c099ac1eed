"""Settings: embedded defaults, secrets generated once, placeholders refused in production."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from newsletter.core.config import Settings, SettingsError


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "BROKER_URL", "SMTP_URL", "SECRET_KEY", "ADMIN_TOKEN", "BASE_URL"):
        monkeypatch.delenv(f"NEWSLETTER_{name}", raising=False)


@pytest.mark.usefixtures("bare_env")
def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'newsletter.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    assert settings.uses_sink and settings.effective_smtp_url == "smtp://127.0.0.1:8025"
    assert settings.base_url == "http://127.0.0.1:8000"


@pytest.mark.usefixtures("bare_env")
def test_secrets_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = Settings(var_dir=tmp_path)
    first.ensure_secrets()
    second = Settings(var_dir=tmp_path)
    second.ensure_secrets()
    assert len(first.secret_key) >= 32 and first.secret_key == second.secret_key
    assert first.admin_token == second.admin_token != first.secret_key
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600


@pytest.mark.usefixtures("bare_env")
@pytest.mark.parametrize("placeholder", ["", "changeme", "secret"])
def test_production_refuses_placeholder_secrets(tmp_path: Path, placeholder: str) -> None:
    settings = Settings(
        var_dir=tmp_path, environment="production", secret_key=placeholder, admin_token="a" * 40
    )
    with pytest.raises(SettingsError, match="NEWSLETTER_SECRET_KEY"):
        settings.ensure_secrets()
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.usefixtures("bare_env")
def test_production_accepts_real_secrets(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path, environment="production", secret_key="s" * 40, admin_token="a" * 40
    )
    settings.ensure_secrets()
    assert settings.secret_key == "s" * 40


def test_var_and_what_is_made_in_it_are_the_owners_alone(tmp_path: Path) -> None:
    from newsletter.core.config import keep_private

    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)  # what an old install left: readable by every account
    previous = os.umask(0o022)
    try:
        keep_private(var)
        (var / "newsletter.db").write_bytes(b"")
        (var / "outbox").mkdir()
        (var / "outbox" / "1.eml").write_bytes(b"")
    finally:
        os.umask(previous)
    for path in (var, var / "newsletter.db", var / "outbox", var / "outbox" / "1.eml"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
