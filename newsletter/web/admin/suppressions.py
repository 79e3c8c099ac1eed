"""Admin dashboard: the suppression list, by hand and by CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from newsletter.app.admin_sessions import SignedIn
from newsletter.bounces.policy import unverified_reports
from newsletter.core import db, spreadsheets
from newsletter.core.validation import InvalidInput
from newsletter.subscribers import suppressions
from newsletter.subscribers.suppressions import SuppressionImport
from newsletter.web.admin.auth import Admin, AdminForm, admin_page, redirect
from newsletter.web.admin.listing import PageNumber, paging
from newsletter.web.admin.uploads import NO_FILE_CHOSEN, CsvFile, csv_text
from newsletter.web.deps import SessionDep

router = APIRouter(prefix="/admin", include_in_schema=False)

PAGE_SIZE = 50
EXPORT_FLUSH_ROWS = 1000

Address = Annotated[str, Form(max_length=400)]


@router.get("/suppressions")
def suppressions_page(
    request: Request, admin: Admin, session: SessionDep, page: PageNumber = 1
) -> HTMLResponse:
    return _page(request, admin, session, page=page)


@router.post("/suppressions")
def add(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    email: Address = "",
    reason: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    try:
        added = suppressions.add(session, email=email, reason=reason.strip() or "manual")
    except InvalidInput as exc:
        session.rollback()
        return _page(request, admin, session, error=exc.message, email=email, status_code=422)
    session.commit()
    shown = email.strip()
    if not added:
        return redirect("/admin/suppressions", f"{shown} was on the list already.")
    return redirect("/admin/suppressions", f"{shown} is suppressed: it will never be mailed.")


@router.post("/suppressions/remove")
def remove(
    request: Request, admin: AdminForm, session: SessionDep, email: Address = ""
) -> Response:
    try:
        removed = suppressions.remove(session, email=email)
    except InvalidInput as exc:
        session.rollback()
        return _page(request, admin, session, error=exc.message, status_code=422)
    if not removed:
        session.rollback()
        return _page(
            request,
            admin,
            session,
            error=f"{email.strip()} is not on the suppression list.",
            status_code=404,
        )
    session.commit()
    return redirect(
        "/admin/suppressions",
        f"{email.strip()} is off the list (it is not subscribed again by this).",
    )


@router.post("/suppressions/import")
async def import_csv(
    request: Request, admin: AdminForm, session: SessionDep, file: CsvFile
) -> Response:
    if file is None:
        return _page(request, admin, session, error=NO_FILE_CHOSEN, status_code=422)
    # Parsing up to 25 MB of CSV runs in the threadpool: the event loop serves everyone else.
    return await run_in_threadpool(_import, request, admin, session, file.raw)


def _import(request: Request, admin: SignedIn, session: Session, raw: bytes) -> Response:
    try:
        report = suppressions.import_csv(session, csv_text(raw))
    except (InvalidInput, csv.Error) as exc:
        session.rollback()
        message = exc.message if isinstance(exc, InvalidInput) else f"The file is not CSV: {exc}."
        return _page(request, admin, session, error=message, status_code=422)
    session.commit()
    return _page(request, admin, session, report=report)


@router.get("/suppressions/export.csv")
def export_csv(admin: Admin) -> StreamingResponse:
    return StreamingResponse(
        _export_chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )


def _export_chunks() -> Iterator[str]:
    """The CSV a thousand rows at a time, from a session of its own (it outlives the
    request's)."""
    buffer = io.StringIO()
    writer = spreadsheets.writer(buffer)
    with db.session_scope() as session:
        for number, row in enumerate(suppressions.export_rows(session), start=1):
            writer.writerow(row)
            if number % EXPORT_FLUSH_ROWS == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def _page(
    request: Request,
    admin: SignedIn,
    session: Session,
    *,
    page: int = 1,
    error: str | None = None,
    email: str = "",
    report: SuppressionImport | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    total = suppressions.count(session)
    shown = paging(total=total, page=page, size=PAGE_SIZE)
    entries = suppressions.page(session, limit=shown.limit, offset=shown.offset)
    unverified_total, unverified = unverified_reports(session)
    return admin_page(
        request,
        "suppressions.html",
        admin,
        {
            "entries": entries,
            "total": total,
            "page": shown.page,
            "pages": shown.pages,
            "error": error,
            "email": email,
            "report": report,
            "unverified_total": unverified_total,
            "unverified": unverified,
        },
        status_code=status_code,
    )
