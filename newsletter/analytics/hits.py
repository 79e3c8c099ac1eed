"""A click or an open as the web process saw it, before anything is written."""

from __future__ import annotations

import json
from dataclasses import dataclass

# The longest User-Agent kept in the buffer: enough to tell a scanner from a browser.
AGENT_CHARS = 200


@dataclass(frozen=True)
class Hit:
    """One request for a tracked link (`/r/`) or an open pixel (`/o/`)."""

    kind: str  # LinkEventKind: click or open
    digest_id: int
    variant_id: int
    article_id: int | None
    arm: int | None
    # The copy of the digest it came from: "c:<random>" (nobody's), or "d:<delivery>" for
    # a reader who allowed per-reader records, with their subscriber id.
    copy: str
    subscriber_id: int | None
    delivery_id: int | None
    at: float  # seconds since the epoch
    head: bool  # a HEAD request: a machine checking the link, never a reader
    agent: str
    # From Apple's network (17.0.0.0/8): Mail Privacy Protection fetching images.
    apple: bool = False

    def dumps(self) -> str:
        # Its fields in order, as a JSON list (vars() keeps the order they are declared
        # in): a fraction of the time of asdict() or astuple(), which copy deeply.
        return json.dumps(list(vars(self).values()), separators=(",", ":"))

    @classmethod
    def loads(cls, line: str | bytes) -> Hit | None:
        """The hit a buffered line holds; None for a line that is not one (a torn write)."""
        try:
            fields = json.loads(line)
            return cls(*fields) if isinstance(fields, list) else None
        except (ValueError, TypeError):
            return None
