"""Settings: embedded defaults, secrets generated once, placeholders refused in production."""

from __future__ import annotations

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
    assert settings.trusted_proxy_list == []  # no X-Forwarded-For believed, not even loopback's


def test_trusted_proxies_are_addresses_or_networks(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, trusted_proxies=" 10.0.0.7, 192.168.0.0/16 ,::1,")
    assert settings.trusted_proxy_list == ["10.0.0.7", "192.168.0.0/16", "::1"]
    for wrong in ("proxy.internal", "*", "10.0.0.300"):
        with pytest.raises(SettingsError, match="NEWSLETTER_TRUSTED_PROXIES"):
            Settings(var_dir=tmp_path, trusted_proxies=wrong)


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
