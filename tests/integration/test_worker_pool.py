"""Why a worker on SQLite forks nothing: a process forked beside a SQLite transaction."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import text

from newsletter.core import db


def test_a_process_forked_beside_a_sqlite_transaction_cannot_write(tmp_path: Path) -> None:
    """SQLite's own rule, which app.queue's choice of pool rests on.

    The parent's thread is inside a transaction when the process forks, as a worker's
    heartbeat may be when its pool replaces a killed process. The child opens a
    connection of its own, yet finds the database locked: it inherited the state of a
    lock that no thread of it will ever release. Should SQLite stop behaving so, this
    fails, and the worker on SQLite may fork its pool again.
    """
    path = tmp_path / "fork.db"
    url = f"sqlite:///{path}"
    with db.session_scope(url) as session:
        session.execute(text("CREATE TABLE beats (n INTEGER)"))
    inside, done = threading.Event(), threading.Event()

    def heartbeat() -> None:
        with db.session_scope(url) as session:
            session.execute(text("INSERT INTO beats VALUES (1)"))
            inside.set()
            done.wait(10)

    beat = threading.Thread(target=heartbeat)
    beat.start()
    assert inside.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: its exit code says what happened; never back into pytest
        code = 2
        signal.alarm(10)  # a child hung inside SQLite dies of SIGALRM, and the test fails
        try:
            connection = sqlite3.connect(path, timeout=2)
            try:
                connection.execute("INSERT INTO beats VALUES (2)")
                connection.commit()
                code = 0
            except sqlite3.OperationalError as exc:
                code = 1 if "locked" in str(exc) else 3
        finally:
            os._exit(code)
    done.set()  # the parent's transaction ends: the database is free for everyone
    beat.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    # Anyone not forked from that moment writes: the lock was only in the child's memory.
    with sqlite3.connect(path, timeout=2) as connection:
        connection.execute("INSERT INTO beats VALUES (3)")
    db.get_engine(url).dispose()
