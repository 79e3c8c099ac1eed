"""Where a checkout finds its templates, seeds and var/ (system/test_wheel.py: an install)."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.core import config
from tests.conftest import ROOT


def test_a_checkout_reads_its_top_level_templates_and_seeds() -> None:
    assert config.CHECKOUT_DIR == ROOT
    assert config.shipped_dir("templates") == config.TEMPLATES_DIR == ROOT / "templates"
    assert config.shipped_dir("seeds") == config.SEEDS_DIR == ROOT / "seeds"
    assert (config.TEMPLATES_DIR / "email" / "_base" / "body.html").is_file()


def test_with_no_var_dir_set_a_checkout_keeps_var_in_itself(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NEWSLETTER_VAR_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # not where the commands run from: where the checkout is
    assert config.Settings().var_dir == ROOT / "var"
