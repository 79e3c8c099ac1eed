"""Settings: embedded defaults, secrets generated once, placeholders refused in production."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import stat
from pathlib import Path

import pytest

from newsletter.core.config import Settings, SettingsError

GOOD_KEY = secrets.token_urlsafe(32)
GOOD_TOKEN = secrets.token_urlsafe(32)


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
def test_a_hex_token_with_few_distinct_digits_is_still_a_real_secret(tmp_path: Path) -> None:
    # 32 random hex digits with only 10 different ones: 1 draw in 60 of `openssl rand -hex
    # 16` looks like this, and was refused as "not random".
    token = "6b1f0e3a9c6b1f0e3a9c6b1f0e3a9c6b"
    settings = Settings(
        var_dir=tmp_path, environment="production", secret_key=GOOD_KEY, admin_token=token
    )
    settings.ensure_secrets()
    assert settings.admin_token == token


@pytest.mark.usefixtures("bare_env")
def test_production_accepts_real_secrets(tmp_path: Path) -> None:
    key, token = secrets.token_urlsafe(32), secrets.token_hex(16)
    settings = Settings(
        var_dir=tmp_path, environment="production", secret_key=key, admin_token=token
    )
    settings.ensure_secrets()
    assert (settings.secret_key, settings.admin_token) == (key, token)
    assert settings.generated_secrets == frozenset()


# --- issue 14, items 5 and 7: secrets that fail open ------------------------------------


@pytest.mark.usefixtures("bare_env")
@pytest.mark.parametrize("name", ["admin_token", "secret_key"])
@pytest.mark.parametrize("content", ["", "\n", "   ", "short-secret"])
def test_an_empty_or_short_secret_file_refuses_to_start(
    tmp_path: Path, name: str, content: str
) -> None:
    # A zero-length var/admin_token made `Authorization: Bearer ` open the admin API; an
    # empty secret_key let anyone sign readers' links.
    (tmp_path / name).write_text(content)
    settings = Settings(var_dir=tmp_path)
    with pytest.raises(SettingsError, match=f"{name}.*(empty|shorter)"):
        settings.ensure_secrets()
    assert (tmp_path / name).read_text() == content  # left for the operator to see


@pytest.mark.usefixtures("bare_env")
@pytest.mark.parametrize(
    ("secret_key", "admin_token", "refused"),
    [
        ("a", GOOD_TOKEN, "NEWSLETTER_SECRET_KEY is shorter than 32"),
        (GOOD_KEY, "admin", "NEWSLETTER_ADMIN_TOKEN is shorter than 32"),
        ("a" * 40, GOOD_TOKEN, "NEWSLETTER_SECRET_KEY is not random"),
        (GOOD_KEY, "adminadmin" * 4, "NEWSLETTER_ADMIN_TOKEN is not random"),
        (GOOD_KEY, "  ", "NEWSLETTER_ADMIN_TOKEN must be set"),
    ],
)
@pytest.mark.parametrize("environment", ["production", "prod", "staging", "Production"])
def test_production_refuses_weak_secrets_under_any_name_but_development(
    tmp_path: Path, environment: str, secret_key: str, admin_token: str, refused: str
) -> None:
    settings = Settings(
        var_dir=tmp_path,
        environment=environment,
        secret_key=secret_key,
        admin_token=admin_token,
    )
    assert settings.is_production
    with pytest.raises(SettingsError, match=refused):
        settings.ensure_secrets()
    assert list(tmp_path.iterdir()) == []  # production generates nothing


@pytest.mark.usefixtures("bare_env")
def test_development_refuses_a_weak_secret_it_was_given(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, environment=" Development ", admin_token="admin" * 3)
    assert not settings.is_production
    with pytest.raises(SettingsError, match="NEWSLETTER_ADMIN_TOKEN is shorter than 32"):
        settings.ensure_secrets()


@pytest.mark.usefixtures("bare_env")
def test_generated_secrets_are_said_only_by_the_start_that_made_them(tmp_path: Path) -> None:
    first = Settings(var_dir=tmp_path)
    first.ensure_secrets()
    assert first.generated_secrets == {"secret_key", "admin_token"}
    second = Settings(var_dir=tmp_path)
    second.ensure_secrets()
    assert second.generated_secrets == frozenset()
    given = Settings(var_dir=tmp_path / "other", admin_token=GOOD_TOKEN)
    given.ensure_secrets()
    assert given.generated_secrets == {"secret_key"}


@pytest.mark.usefixtures("bare_env")
def test_secrets_generated_at_once_by_many_processes_are_one_whole_secret(tmp_path: Path) -> None:
    # Web and worker start together: each must read the one secret, never a file half
    # written (the empty file a reader could catch between open and write).
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        values = pool.map(_generate, [str(tmp_path)] * 16)
    assert len(set(values)) == 1 and len(values[0]) >= 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin_token", "secret_key"]
    assert stat.S_IMODE((tmp_path / "admin_token").stat().st_mode) == 0o600


def _generate(folder: str) -> str:
    settings = Settings(var_dir=Path(folder), secret_key="", admin_token="")
    settings.ensure_secrets()
    return settings.admin_token


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


def test_production_refuses_to_start_without_a_postal_address(tmp_path: Path) -> None:
    secrets_ = {"secret_key": GOOD_KEY, "admin_token": "t" * 8 + GOOD_KEY}
    settings = Settings(var_dir=tmp_path, environment="production", **secrets_)
    with pytest.raises(SettingsError, match="NEWSLETTER_POSTAL_ADDRESS must be set in production"):
        settings.ensure_sender_identity()
    given = Settings(
        var_dir=tmp_path, environment="production", postal_address=" Rua X 1, Lisboa ", **secrets_
    )
    given.ensure_sender_identity()
    assert given.postal_address == "Rua X 1, Lisboa"
    with pytest.raises(SettingsError, match="one line"):
        Settings(var_dir=tmp_path, postal_address="Rua X\nBcc: y").ensure_sender_identity()
    Settings(var_dir=tmp_path, environment="development").ensure_sender_identity()  # optional


@pytest.mark.usefixtures("bare_env")
def test_production_needs_the_base_url_every_link_begins_with(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="NEWSLETTER_BASE_URL must be set in production"):
        Settings(var_dir=tmp_path, environment="production").ensure_base_url()
    Settings(
        var_dir=tmp_path, environment="production", base_url="https://news.example.com/"
    ).ensure_base_url()
    Settings(var_dir=tmp_path).ensure_base_url()  # development: the default will do
    for wrong in ("news.example.com", "ftp://news.example.com", "https://"):
        with pytest.raises(SettingsError, match="http\\(s\\) address with a host"):
            Settings(var_dir=tmp_path, base_url=wrong).ensure_base_url()


def test_a_setting_can_come_from_a_file_as_container_secrets_do(tmp_path: Path) -> None:
    from newsletter.core.config import settings_from_files

    key_file = tmp_path / "secret_key"
    key_file.write_text(GOOD_KEY + "\r\n")
    environ = {"NEWSLETTER_SECRET_KEY_FILE": str(key_file), "OTHER_FILE": str(key_file)}
    assert settings_from_files(environ) == {"secret_key": GOOD_KEY}
    for wrong in ("NEWSLETTER_DATABASE_URI_FILE", "NEWSLETTER_FEEDS_FILE"):  # misspelt; a list
        with pytest.raises(SettingsError, match=f"{wrong}: .* is no text setting"):
            settings_from_files({wrong: str(key_file)})
    with pytest.raises(SettingsError, match="not both"):
        settings_from_files({**environ, "NEWSLETTER_SECRET_KEY": "x"})
    with pytest.raises(SettingsError, match="NEWSLETTER_ADMIN_TOKEN_FILE: cannot read"):
        settings_from_files({"NEWSLETTER_ADMIN_TOKEN_FILE": str(tmp_path / "missing")})


def test_get_settings_reads_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.core.config import get_settings

    (tmp_path / "token").write_text(GOOD_TOKEN)
    monkeypatch.delenv("NEWSLETTER_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("NEWSLETTER_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("NEWSLETTER_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    try:
        assert get_settings().admin_token == GOOD_TOKEN
    finally:
        get_settings.cache_clear()
