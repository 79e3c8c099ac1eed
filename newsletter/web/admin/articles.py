"""Admin dashboard: articles, newest first; importing files; priority; story; hiding."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from newsletter.app.admin_sessions import SignedIn
from newsletter.articles import store as article_store
from newsletter.articles.store import ARTICLE_SUFFIXES, ArticleParseError, UnknownArticle
from newsletter.core.validation import InvalidInput
from newsletter.web.admin.auth import Admin, AdminForm, admin_page, redirect
from newsletter.web.admin.listing import PageNumber, paging
from newsletter.web.deps import RowId, SessionDep

router = APIRouter(prefix="/admin", include_in_schema=False)

PAGE_SIZE = 50
MAX_FILES = 100
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_NAME_CHARS = 200

PageField = Annotated[int, Form(ge=1, le=1_000_000)]


@dataclass(frozen=True)
class FileReport:
    """One uploaded file's fate: imported, already known, or refused (and why)."""

    name: str
    outcome: str
    detail: str = ""


@router.get("/articles")
def articles_page(
    request: Request, admin: Admin, session: SessionDep, page: PageNumber = 1
) -> HTMLResponse:
    return _page(request, admin, session, page=page)


@router.post("/articles/import")
async def import_articles(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    files: Annotated[list[UploadFile] | None, File()] = None,
) -> Response:
    uploads = [f for f in files or [] if f.filename]
    if not uploads:
        return _page(
            request, admin, session, error="Choose one or more article files.", status_code=422
        )
    if len(uploads) > MAX_FILES:
        return _page(
            request,
            admin,
            session,
            error=f"At most {MAX_FILES} files at once, please; {len(uploads)} were sent.",
            status_code=422,
        )
    files_read = [
        (_file_name(upload.filename or ""), await upload.read(MAX_FILE_BYTES + 1))
        for upload in uploads
    ]
    # Parsing and storing run in the threadpool: the event loop serves everyone else.
    return await run_in_threadpool(_import_files, request, admin, session, files_read)


def _import_files(
    request: Request, admin: SignedIn, session: Session, files_read: list[tuple[str, bytes]]
) -> Response:
    reports = [_import_one(session, name, raw) for name, raw in files_read]
    session.commit()
    imported = any(r.outcome != "refused" for r in reports)
    return _page(request, admin, session, reports=reports, status_code=200 if imported else 422)


@router.post("/articles/{article_id}/priority")
def set_priority(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    article_id: RowId,
    priority: Annotated[str, Form(max_length=50)] = "",
    page: PageField = 1,
) -> Response:
    try:
        value = _whole_number(priority)
        article = article_store.set_priority(session, article_id=article_id, priority=value)
    except UnknownArticle as exc:
        session.rollback()
        return _page(request, admin, session, page=page, error=str(exc), status_code=404)
    except InvalidInput as exc:
        session.rollback()
        return _page(request, admin, session, page=page, error=exc.message, status_code=422)
    session.commit()
    return redirect(
        f"/admin/articles?page={page}", f"“{article.title}” now has priority {article.priority}."
    )


@router.post("/articles/{article_id}/story")
def set_story(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    article_id: RowId,
    story: Annotated[str, Form(max_length=200)] = "",
    page: PageField = 1,
) -> Response:
    try:
        article = article_store.set_story(session, article_id=article_id, story=story)
    except UnknownArticle as exc:
        session.rollback()
        return _page(request, admin, session, page=page, error=str(exc), status_code=404)
    except InvalidInput as exc:
        session.rollback()
        return _page(request, admin, session, page=page, error=exc.message, status_code=422)
    session.commit()
    done = (
        f"is a version of the story {article.story}" if article.story else "is a story of its own"
    )
    return redirect(f"/admin/articles?page={page}", f"“{article.title}” {done}.")


@router.post("/articles/{article_id}/hide")
def hide(
    request: Request, admin: AdminForm, session: SessionDep, article_id: RowId, page: PageField = 1
) -> Response:
    return _set_hidden(request, admin, session, article_id, hidden=True, page=page)


@router.post("/articles/{article_id}/unhide")
def unhide(
    request: Request, admin: AdminForm, session: SessionDep, article_id: RowId, page: PageField = 1
) -> Response:
    return _set_hidden(request, admin, session, article_id, hidden=False, page=page)


def _set_hidden(
    request: Request,
    admin: SignedIn,
    session: Session,
    article_id: int,
    *,
    hidden: bool,
    page: int,
) -> Response:
    try:
        article = article_store.set_hidden(session, article_id=article_id, hidden=hidden)
    except UnknownArticle as exc:
        session.rollback()
        return _page(request, admin, session, page=page, error=str(exc), status_code=404)
    session.commit()
    done = "hidden from digests and the web" if hidden else "shown again"
    return redirect(f"/admin/articles?page={page}", f"“{article.title}” is {done}.")


def _import_one(session: Session, name: str, raw: bytes) -> FileReport:
    suffix = PurePath(name).suffix.lower()
    if suffix not in ARTICLE_SUFFIXES:
        known = ", ".join(sorted(ARTICLE_SUFFIXES))
        return FileReport(name, "refused", f"not an article file: its name must end in {known}")
    if len(raw) > MAX_FILE_BYTES:
        return FileReport(name, "refused", f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    try:
        parsed = article_store.parse_article_bytes(raw, source=name)
        article, created = article_store.store_article(session, parsed)
    except ArticleParseError as exc:
        # The parser's message starts with the file's name, shown once already.
        return FileReport(name, "refused", str(exc).removeprefix(f"{name}: "))
    if created:
        return FileReport(name, "imported", article.title)
    return FileReport(name, "already known", article.title)


def _file_name(given: str) -> str:
    """The upload's own name without any folders a browser sent, fit to show and keep."""
    name = re.split(r"[/\\]", given)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[-MAX_NAME_CHARS:] or "upload"


def _whole_number(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidInput(
            "priority",
            f"The priority must be a whole number from {article_store.MIN_PRIORITY} to "
            f"{article_store.MAX_PRIORITY}, such as 10; {text[:20]!r} is not one.",
        ) from None


def _page(
    request: Request,
    admin: SignedIn,
    session: Session,
    *,
    page: int = 1,
    error: str | None = None,
    reports: list[FileReport] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    total = article_store.count_articles(session, include_hidden=True)
    shown = paging(total=total, page=page, size=PAGE_SIZE)
    rows = article_store.list_articles(
        session, limit=shown.limit, offset=shown.offset, include_hidden=True
    )
    return admin_page(
        request,
        "articles.html",
        admin,
        {
            "articles": rows,
            "total": total,
            "page": shown.page,
            "pages": shown.pages,
            "error": error,
            "reports": reports,
            "suffixes": ", ".join(sorted(ARTICLE_SUFFIXES)),
            "min_priority": article_store.MIN_PRIORITY,
            "max_priority": article_store.MAX_PRIORITY,
            "story_max_chars": article_store.STORY_MAX_CHARS,
        },
        status_code=status_code,
    )
