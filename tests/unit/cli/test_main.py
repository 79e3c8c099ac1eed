"""The `newsletter` command's own words: what `newsletter up` says about the admin token."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.cli.main import _announce_admin_token
from newsletter.core.config import Settings


def announced(settings: Settings, capsys: pytest.CaptureFixture[str]) -> str:
    _announce_admin_token(settings)
    return capsys.readouterr().out


def test_up_shows_the_admin_token_only_on_the_start_that_generated_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 14, item 11: every start printed the token into terminals and journals.
    monkeypatch.delenv("NEWSLETTER_ADMIN_TOKEN", raising=False)
    first = Settings(var_dir=tmp_path)
    first.ensure_secrets()
    assert first.admin_token in announced(first, capsys)
    again = Settings(var_dir=tmp_path)
    again.ensure_secrets()
    said = announced(again, capsys)
    assert again.admin_token not in said and str(tmp_path / "admin_token") in said


def test_up_never_shows_a_token_it_was_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "given-admin-token-0123456789abcdefghij"
    settings = Settings(var_dir=tmp_path, admin_token=token)
    settings.ensure_secrets()
    said = announced(settings, capsys)
    assert token not in said and "NEWSLETTER_ADMIN_TOKEN" in said
