"""Admin dashboard: finding subscribers, one subscriber's page, bounces reset, CSV out and in."""

from __future__ import annotations

import io
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from newsletter.app import editors, readers
from newsletter.app.admin_sessions import SignedIn
from newsletter.app.unit_of_work import UnitOfWork
from newsletter.bounces import policy as bounces
from newsletter.core import db, spreadsheets
from newsletter.core.config import get_settings
from newsletter.core.models import SubscriberStatus
from newsletter.core.validation import InvalidInput
from newsletter.digests import outcomes
from newsletter.subscribers import exporting, reader_status, store, suppressions
from newsletter.subscribers.importing import COLUMNS, ImportReport
from newsletter.subscribers.newsletters import list_newsletters
from newsletter.subscribers.store import UnknownSubscriber
from newsletter.web.admin.auth import Admin, AdminForm, admin_page, message_page, redirect
from newsletter.web.admin.listing import PageNumber, paging
from newsletter.web.admin.uploads import NO_FILE_CHOSEN, CsvFile, CsvUpload, csv_text
from newsletter.web.deps import RowId, SessionDep, UnitOfWorkDep

router = APIRouter(prefix="/admin", include_in_schema=False)

PAGE_SIZE = 50
EXPORT_BATCH = 1000
# An upload waits this long between its dry run and its confirmation, then is deleted.
UPLOAD_KEPT_SECONDS = 24 * 3600
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")

SearchText = Annotated[str, Query(max_length=320)]


@router.get("/subscribers")
def subscribers_page(
    request: Request, admin: Admin, session: SessionDep, q: SearchText = "", page: PageNumber = 1
) -> HTMLResponse:
    try:
        total = store.count_subscribers(session, text=q)
    except InvalidInput as exc:
        return admin_page(
            request,
            "subscribers.html",
            admin,
            {"q": "", "rows": [], "total": 0, "page": 1, "pages": 1, "error": exc.message},
            status_code=422,
        )
    shown = paging(total=total, page=page, size=PAGE_SIZE)
    found = store.search_subscribers(session, text=q, limit=shown.limit, offset=shown.offset)
    slugs = _newsletter_slugs(session)
    statuses = reader_status.statuses_of(session, [s.id for s in found])
    rows = [
        {
            "subscriber": s,
            "status": statuses.get(s.id, ""),
            "subscriptions": [(slugs.get(x.newsletter_id, "?"), x.status) for x in s.subscriptions],
        }
        for s in found
    ]
    return admin_page(
        request,
        "subscribers.html",
        admin,
        {"q": q, "rows": rows, "total": total, "page": shown.page, "pages": shown.pages},
    )


@router.get("/subscribers/export.csv")
def export_subscribers(admin: Admin, session: SessionDep, q: SearchText = "") -> Response:
    try:
        store.count_subscribers(session, text=q)  # checks the search text before streaming
    except InvalidInput as exc:
        return Response(exc.message, status_code=422, media_type="text/plain")
    name = "subscribers-search.csv" if q.strip() else "subscribers.csv"
    return StreamingResponse(
        _export_rows(q),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/subscribers/import")
def import_form(request: Request, admin: Admin) -> HTMLResponse:
    return _import_page(request, admin)


@router.post("/subscribers/import")
async def import_dry_run(
    request: Request, admin: AdminForm, work: UnitOfWorkDep, file: CsvFile
) -> Response:
    """First step: keep the upload under a random id and report what it would change."""
    if file is None:
        return _import_page(request, admin, error=NO_FILE_CHOSEN, status_code=422)
    # Parsing up to 25 MB of CSV runs in the threadpool: the event loop serves everyone else.
    return await run_in_threadpool(_dry_run, request, admin, work, file)


def _dry_run(request: Request, admin: SignedIn, work: UnitOfWork, file: CsvUpload) -> Response:
    try:
        report = _run_import(work, file.raw, dry_run=True)
    except InvalidInput as exc:
        return _import_page(request, admin, error=exc.message, status_code=422)
    upload_id = _keep_upload(file.raw)
    return _import_page(request, admin, report=report, upload_id=upload_id, file_name=file.name)


@router.post("/subscribers/import/confirm")
def import_confirm(
    request: Request,
    admin: AdminForm,
    work: UnitOfWorkDep,
    upload_id: Annotated[str, Form(max_length=100)] = "",
    send_confirmations: Annotated[bool, Form()] = False,
    welcome: Annotated[bool, Form()] = False,
) -> Response:
    """Second step: the same upload, imported for real; then it is deleted."""
    path = _upload_path(upload_id)
    if path is None or not path.is_file():
        return _import_page(
            request,
            admin,
            error="That upload is no longer here (uploads are kept for a day). "
            "Please upload the file again.",
            status_code=404,
        )
    try:
        report = _run_import(
            work,
            path.read_bytes(),
            dry_run=False,
            send_confirmations=send_confirmations,
            welcome=welcome,
        )
    except InvalidInput as exc:
        return _import_page(request, admin, error=exc.message, status_code=422)
    path.unlink(missing_ok=True)
    return _import_page(request, admin, report=report, done=True)


@router.get("/subscribers/{subscriber_id}")
def subscriber_page(
    request: Request, admin: Admin, session: SessionDep, subscriber_id: RowId
) -> HTMLResponse:
    try:
        data = store.export_data(session, subscriber_id=subscriber_id)
    except UnknownSubscriber as exc:
        return message_page(request, admin, "No such subscriber", str(exc), status_code=404)
    subscriber = store.get_subscriber(session, subscriber_id)
    return admin_page(
        request,
        "subscriber.html",
        admin,
        {
            "id": subscriber_id,
            "s": data,
            "suppressed": suppressions.is_listed(session, subscriber.email_key),
            "deliveries": store.delivery_counts(session, subscriber_id=subscriber_id),
            "recent": outcomes.reader_deliveries(session, subscriber_id=subscriber_id),
            # Mail stopped reaching them (whatever the status shown, suppressed first).
            "bounced": subscriber.status == SubscriberStatus.BOUNCED,
        },
    )


@router.post("/subscribers/{subscriber_id}/reset-bounces")
def reset_bounces(
    request: Request, admin: AdminForm, session: SessionDep, subscriber_id: RowId
) -> Response:
    try:
        bounces.reset_bounces(session, subscriber_id=subscriber_id)
    except UnknownSubscriber as exc:
        session.rollback()
        return message_page(request, admin, "No such subscriber", str(exc), status_code=404)
    session.commit()
    return redirect(
        f"/admin/subscribers/{subscriber_id}", "Bounces reset: the address is deliverable again."
    )


@router.post("/subscribers/{subscriber_id}/revoke-links")
def revoke_links(
    request: Request, admin: AdminForm, work: UnitOfWorkDep, subscriber_id: RowId
) -> Response:
    """A reader's preferences link leaked (a forwarded email): every such link goes dead."""
    try:
        readers.revoke_links(work, subscriber_id=subscriber_id)
    except UnknownSubscriber as exc:
        work.rollback()
        return message_page(request, admin, "No such subscriber", str(exc), status_code=404)
    return redirect(
        f"/admin/subscribers/{subscriber_id}",
        "Links revoked: the preferences, data and erasure links mailed so far no longer work.",
    )


def _run_import(
    work: UnitOfWork,
    raw: bytes,
    *,
    dry_run: bool,
    send_confirmations: bool = False,
    welcome: bool = False,
) -> ImportReport:
    """The upload imported (committed, then its confirmations queued), or its dry run."""
    settings = get_settings()
    return editors.import_subscribers(
        work,
        stream=csv_text(raw),
        settings=settings,
        dry_run=dry_run,
        send_confirmations=send_confirmations,
        welcome=welcome,
    )


def _uploads_dir() -> Path:
    folder = get_settings().var_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _keep_upload(raw: bytes) -> str:
    """Store the upload under a random id (the only name it has) and forget stale ones."""
    folder = _uploads_dir()
    stale = time.time() - UPLOAD_KEPT_SECONDS
    for old in folder.glob("*.csv"):
        if old.stat().st_mtime < stale:
            old.unlink(missing_ok=True)
    upload_id = secrets.token_urlsafe(24)
    (folder / f"{upload_id}.csv").write_bytes(raw)
    return upload_id


def _upload_path(upload_id: str) -> Path | None:
    # Only an id we could have made names a file: nothing else reaches the file system.
    if not _UPLOAD_ID.match(upload_id):
        return None
    path = _uploads_dir() / f"{upload_id}.csv"
    if path.is_file() and path.stat().st_mtime < time.time() - UPLOAD_KEPT_SECONDS:
        path.unlink(missing_ok=True)
        return None
    return path


def _import_page(
    request: Request,
    admin: SignedIn,
    *,
    report: ImportReport | None = None,
    upload_id: str | None = None,
    file_name: str | None = None,
    done: bool = False,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return admin_page(
        request,
        "subscribers_import.html",
        admin,
        {
            "report": report,
            "upload_id": upload_id,
            "file_name": file_name,
            "done": done,
            "error": error,
            "columns": ", ".join(COLUMNS),
        },
        status_code=status_code,
    )


def _export_rows(text: str) -> Iterator[str]:
    """The CSV, a batch of subscribers at a time, from a session of its own (it outlives the
    request's)."""
    buffer = io.StringIO()
    writer = spreadsheets.writer(buffer)
    with db.session_scope() as session:
        for number, row in enumerate(exporting.reader_rows(session, text=text)):
            writer.writerow(row)
            if number % EXPORT_BATCH == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def _newsletter_slugs(session: Session) -> dict[int, str]:
    return {n.id: n.slug for n in list_newsletters(session)}
