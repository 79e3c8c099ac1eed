"""Benchmark of the CSV subscriber import on PostgreSQL, against parsing and validation alone.

.venv/bin/python -m bench.import_subscribers --rows 200000
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from email_validator import validate_email
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from newsletter.core.models import Newsletter
from newsletter.core.schema import upgrade
from newsletter.subscribers import newsletters
from newsletter.subscribers.importing import ImportReport, import_subscribers_csv

POSTGRES_ADMIN_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
LANGUAGES = ("en", "pt", "zh")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk-size", type=int, default=5000)
    parser.add_argument("--admin-url", default=POSTGRES_ADMIN_URL)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "subscribers.csv"
        write_csv(path, args.rows)
        print(f"{args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB of CSV")
        print(f"peak memory before any work: {peak_mb():.0f} MB")

        baseline = timed(lambda: parse_and_validate(path))
        print(f"baseline (csv + email-validator, no database): {rate(args.rows, baseline)}")
        print(f"peak memory after the baseline: {peak_mb():.0f} MB")

        with fresh_database(args.admin_url) as engine:
            seconds, report = timed_import(engine, path, args.chunk_size)
            expect("every row added", report.added == args.rows, report)
            print(f"import, all new: {rate(args.rows, seconds)}, {ratio(seconds, baseline)}")
            print(f"peak memory after the import: {peak_mb():.0f} MB")

            seconds, report = timed_import(engine, path, args.chunk_size)
            expect("every row unchanged", report.unchanged == args.rows, report)
            print(f"same file again: {rate(args.rows, seconds)}, {ratio(seconds, baseline)}")
            print(f"peak memory after the second import: {peak_mb():.0f} MB")


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["email", "name", "language", "topics", "newsletter", "confirmed"])
        for i in range(rows):
            writer.writerow(
                [
                    f"Reader.{i}@Example{i % 97}.com",
                    f"Reader {i}",
                    LANGUAGES[i % 3],
                    f"topic{i % 7};news",
                    ("daily", "weekly")[i % 2],
                    ("no", "yes")[i % 4 == 0],
                ]
            )


def parse_and_validate(path: Path) -> None:
    """What any import must pay: reading the CSV and checking each address."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        for row in reader:
            validate_email(row["email"], check_deliverability=False)


def timed_import(engine: Engine, path: Path, chunk_size: int) -> tuple[float, ImportReport]:
    with Session(engine) as session, path.open(newline="", encoding="utf-8") as file:
        started = time.perf_counter()
        report = import_subscribers_csv(
            session,
            file,
            default_language="en",
            default_time_zone="Europe/Lisbon",
            chunk_size=chunk_size,
        )
        session.commit()
        return time.perf_counter() - started, report


@contextmanager
def fresh_database(admin_url: str) -> Iterator[Engine]:
    """A new PostgreSQL database with the newest schema and both newsletters, dropped after."""
    name = f"nl_import_bench_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(make_url(admin_url).set(database=name))
    try:
        upgrade(engine)
        with Session(engine) as session:
            newsletters.ensure_default_newsletter(session, language="en", time_zone="Europe/Lisbon")
            session.add(Newsletter(slug="weekly", name="Weekly review"))
            session.commit()
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def expect(what: str, holds: bool, report: ImportReport) -> None:
    if not holds:
        summary = report.as_dict() | {"pending_subscriber_ids": "…", "refused": report.refused[:5]}
        raise SystemExit(f"expected {what}, got {summary}")


def rate(rows: int, seconds: float) -> str:
    return f"{seconds:.2f} s, {rows / seconds:,.0f} rows/s"


def ratio(seconds: float, baseline: float) -> str:
    return f"{seconds / baseline:.2f} times the baseline"


def peak_mb() -> float:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


if __name__ == "__main__":
    main()
