"""Readiness as /readyz reports it: asked of the relay once per few seconds, whoever polls
(/readyz over HTTP, with a real worker and broker: tests/integration/test_monitoring.py)."""

from __future__ import annotations

from typing import Any

import pytest

from newsletter.core.config import get_settings
from newsletter.ops import monitoring


def test_readiness_is_asked_once_per_few_seconds_and_again_for_another_relay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Anyone may poll /readyz: each call must not open a relay connection of its own."""
    asked: list[str] = []

    def counted(settings: Any) -> dict[str, dict[str, Any]]:
        asked.append(settings.smtp_relays[0])
        return {"smtp": {"ok": True}}

    monkeypatch.setattr(monitoring, "readiness", counted)
    monkeypatch.setattr(monitoring, "_readiness_cache", {})
    settings = get_settings()
    for _ in range(5):
        assert monitoring.recent_readiness(settings) == {"smtp": {"ok": True}}
    assert len(asked) == 1
    monkeypatch.setattr(settings, "smtp_url", "smtp://127.0.0.1:1")  # another relay: asked anew
    monitoring.recent_readiness(settings)
    assert asked[-1] == "smtp://127.0.0.1:1" and len(asked) == 2
    monitoring.recent_readiness(settings, max_age=0)  # stale at once
    assert len(asked) == 3
