"""Enhanced status codes (RFC 3463, "5.1.1") as relays and providers write them in text."""

from __future__ import annotations

import re

_ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def enhanced_status(text: str | None) -> str | None:
    """The first enhanced status code in a reply or a provider's diagnostic, if any."""
    match = _ENHANCED_STATUS.search(text or "")
    return match.group(1) if match else None
