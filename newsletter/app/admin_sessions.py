"""Admin dashboard sessions: sign in with the admin token, sign out, and CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.core.clock import utcnow
from newsletter.core.models import AdminSession


class WrongToken(ValueError):
    """The token given to sign in is not the admin token."""


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
    now: datetime | None = None,
) -> SignedIn:
    """A new session for whoever knows the admin token; WrongToken for anyone else."""
    if not admin_token or not hmac.compare_digest(
        _sha256(given_token.strip()), _sha256(admin_token)
    ):
        raise WrongToken("That is not the admin token.")
    now = now or utcnow()
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


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
