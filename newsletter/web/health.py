"""Health: whether the database and the broker answer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kombu.connection import Connection
from sqlalchemy import text

from newsletter.core import db
from newsletter.core.config import get_settings

router = APIRouter()


@router.get(
    "/healthz",
    responses={503: {"description": "The database or the broker does not answer (same body)."}},
)
def healthz() -> JSONResponse:
    checks = {"database": _database_answers(), "broker": _broker_answers()}
    healthy = all(check["ok"] for check in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )


def _database_answers() -> dict[str, object]:
    try:
        with db.session_scope() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not healthy", and says why
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def _broker_answers() -> dict[str, object]:
    try:
        with Connection(get_settings().broker_url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}
