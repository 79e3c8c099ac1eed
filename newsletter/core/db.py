"""Database engine and sessions: one engine per URL, SQLite tuned for several processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from newsletter.core.config import get_settings

_factories: dict[str, sessionmaker[Session]] = {}


def get_engine(url: str | None = None) -> Engine:
    """The engine for url (default: the configured database)."""
    return _factory(url).kw["bind"]  # type: ignore[no-any-return]


def new_session(url: str | None = None) -> Session:
    return _factory(url)()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises."""
    session = new_session(url)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset(*, close: bool = True) -> None:
    """Forget every engine (tests switch databases; forked workers must not share sockets).

    A forked process passes close=False: the sockets it inherited are its parent's, still
    in use there (the heartbeat's), and are dropped without a word sent on them.
    """
    for factory in _factories.values():
        factory.kw["bind"].dispose(close=close)
    _factories.clear()


def _factory(url: str | None) -> sessionmaker[Session]:
    url = url or get_settings().database_url
    factory = _factories.get(url)
    if factory is None:
        factory = sessionmaker(bind=_create_engine(url), expire_on_commit=False)
        _factories[url] = factory
    return factory


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if make_url(url).get_driver_name() == "psycopg":
        # A server that vanished (not one that refused) must not hold a worker for the
        # kernel's minutes: give up connecting after 10 s, and notice a dead peer within
        # a minute even mid-statement (libpq's keepalives and TCP user timeout).
        connect_args = {
            "connect_timeout": 10,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 60_000,
        }
    # Half as many more for a burst (opened for it, then closed); the web process keeps
    # its blocking work within the pool (web.app.limit_threads): the steady load never
    # needs them.
    size = get_settings().database_pool_size
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=size,
        max_overflow=size // 2,
        connect_args=connect_args,
    )
    event.listen(engine, "connect", _postgresql_planning)
    return engine


def _postgresql_planning(dbapi_connection: Any, _record: Any) -> None:
    """Every statement planned for its own values and the tables as they are now.

    psycopg prepares a statement run five times, and PostgreSQL may then settle on one
    generic plan made while a table was small or never analyzed: a new digest's
    deliveries, say, walked in full for each claim of eight of them. Planning costs tens
    of microseconds; such a plan cost milliseconds. A SET, not a startup option: the
    options of the URL and PGOPTIONS stay the operator's, and poolers that refuse
    startup options still connect.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("SET plan_cache_mode = force_custom_plan")
    cursor.close()
    dbapi_connection.commit()  # a SET rolled back with its transaction would be lost


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web process read while a worker writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
