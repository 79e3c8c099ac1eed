"""Admin dashboard sessions: sign in with the admin token, sign out, and CSRF tokens.

Sign-in attempts are counted per client address in the database, which every web
process shares, before the token given is looked at: once a client has spent its
allowance for the window, even the right token is refused until the window ends, and
guesses sent in parallel are refused rather than all tried.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.core.clock import utcnow
from newsletter.core.models import AdminSession, SignInAttempts


class WrongToken(ValueError):
    """The token given to sign in is not the admin token; `attempt` is the how-manieth of
    the client's window (the pause before the answer grows with it)."""

    def __init__(self, attempt: int) -> None:
        super().__init__("That is not the admin token.")
        self.attempt = attempt


class LockedOut(Exception):
    """Too many sign-in attempts from this client: no token is looked at for a while."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many sign-in attempts; try again in {retry_after} s.")
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignInLimit:
    """How many attempts one client address may make in a window."""

    attempts: int
    window: timedelta


# The settings' defaults (NEWSLETTER_ADMIN_SIGNIN_ATTEMPTS, _WINDOW_SECONDS).
DEFAULT_LIMIT = SignInLimit(10, timedelta(minutes=15))


@dataclass(frozen=True)
class SignedIn:
    """A live session: the id its cookie carries and the CSRF token its forms must echo."""

    session_id: str
    csrf_token: str
    expires_at: datetime


def sign_in(
    session: Session,
    *,
    given_token: str,
    admin_token: str,
    lifetime: timedelta,
    client: str = "?",
    limit: SignInLimit | None = None,
    now: datetime | None = None,
) -> SignedIn:
    """A new session for whoever knows the admin token; WrongToken for anyone else, and
    LockedOut (token unread) for a client over its allowance.

    The caller commits whatever this raises: the attempt stays counted.
    """
    now = now or utcnow()
    limit = limit or DEFAULT_LIMIT
    client = _client_hash(client, admin_token)
    attempt, started = _count_attempt(session, client=client, now=now, window=limit.window)
    if attempt > limit.attempts:
        ends = started + limit.window
        raise LockedOut(max(1, int((ends - now).total_seconds() + 0.999)))
    if not admin_token_matches(given_token, admin_token):
        raise WrongToken(attempt)
    # The right token: the client's count starts afresh.
    session.execute(delete(SignInAttempts).where(SignInAttempts.client_hash == client))
    # Expired sessions go when someone signs in: no beat task needed for a small table.
    session.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
    session_id = secrets.token_urlsafe(32)
    row = AdminSession(
        id_hash=_sha256(session_id),
        csrf_token=secrets.token_urlsafe(32),
        token_hash=_sha256(admin_token),
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    session.flush()
    return SignedIn(session_id, row.csrf_token, row.expires_at)


def admin_token_matches(given: str | None, admin_token: str) -> bool:
    """Whether `given` is the admin token; never when either is empty (an empty token
    configured by mistake opens nothing)."""
    given = (given or "").strip()
    if not given or not admin_token:
        return False
    # Hashed first: compare_digest of equal lengths says nothing about the token's length.
    return hmac.compare_digest(_sha256(given), _sha256(admin_token))


def find(
    session: Session, session_id: str, *, admin_token: str, now: datetime | None = None
) -> SignedIn | None:
    """The live session of this id: None when signed out, expired, or of an older token."""
    row = session.scalar(select(AdminSession).where(AdminSession.id_hash == _sha256(session_id)))
    if row is None or row.expires_at <= (now or utcnow()):
        return None
    if not admin_token or not hmac.compare_digest(row.token_hash, _sha256(admin_token)):
        return None
    return SignedIn(session_id, row.csrf_token, row.expires_at)


def sign_out(session: Session, session_id: str) -> None:
    """End the session: its cookie opens nothing any more, wherever it was copied to."""
    session.execute(delete(AdminSession).where(AdminSession.id_hash == _sha256(session_id)))


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def _count_attempt(
    session: Session, *, client: str, now: datetime, window: timedelta
) -> tuple[int, datetime]:
    """Count one attempt: (its number in the client's window, when that window started).

    Windows that have passed are deleted first (the client starts again at 1, and no
    client's hash is kept longer than a window); then one atomic statement inserts the
    client's row or adds one to it, so that attempts sent at once each get a number.
    """
    session.execute(delete(SignInAttempts).where(SignInAttempts.window_started_at <= now - window))
    table = cast(Table, SignInAttempts.__table__)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(client_hash=client, attempts=1, window_started_at=now)
        .on_conflict_do_update(
            index_elements=[table.c.client_hash], set_={"attempts": table.c.attempts + 1}
        )
        .returning(table.c.attempts, table.c.window_started_at)
    )
    attempts, started = session.execute(statement).one()
    return int(attempts), started


def _client_hash(client: str, admin_token: str) -> str:
    # Client addresses are personal data: the table keeps a keyed hash of each.
    return hmac.new(admin_token.encode(), f"signin:{client}".encode(), hashlib.sha256).hexdigest()


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
