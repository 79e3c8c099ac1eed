"""The unit tier stays a unit tier: a test here that asks for a service is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent

# The root conftest's fixtures that start or reach a server, a broker or a worker.
SERVICE_FIXTURES = frozenset(
    {
        "postgres_server",
        "database_url",
        "engine",
        "clean_db",
        "smtp_server",
        "mailbox",
        "redis_broker",
        "worker",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Called with the whole run's items, whichever folder's conftest defines it.
    for item in items:
        if not item.path.is_relative_to(UNIT):
            continue
        used = SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if used:
            raise pytest.UsageError(
                f"{item.nodeid} uses {', '.join(sorted(used))}: "
                "a test that needs a service belongs in tests/integration"
            )
