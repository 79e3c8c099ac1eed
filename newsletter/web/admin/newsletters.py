"""Admin dashboard: the newsletters, adding one, and each one's recurring schedule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from newsletter.app.admin_sessions import SignedIn
from newsletter.core import clock
from newsletter.core.config import LANGUAGES, get_settings
from newsletter.core.i18n import LANGUAGE_NAMES
from newsletter.core.validation import InvalidInput
from newsletter.digests import schedules
from newsletter.subscribers.newsletters import (
    UnknownNewsletter,
    get_by_slug,
    set_click_order,
    translate_newsletter,
)
from newsletter.web.admin.auth import Admin, AdminForm, admin_page, redirect
from newsletter.web.deps import SessionDep

router = APIRouter(prefix="/admin", include_in_schema=False)

ShortText = Annotated[str, Form(max_length=300)]
LongText = Annotated[str, Form(max_length=2000)]


@dataclass
class _TranslatedNames:
    """The form's name_<lang> and description_<lang> fields, by language."""

    names: dict[str, str]
    descriptions: dict[str, str]


async def _translated_names(request: Request) -> _TranslatedNames:
    form = await request.form()

    def given(prefix: str) -> dict[str, str]:
        return {
            code: value
            for code in LANGUAGES
            if isinstance(value := form.get(f"{prefix}_{code}"), str)
        }

    return _TranslatedNames(names=given("name"), descriptions=given("description"))


TranslatedNames = Annotated[_TranslatedNames, Depends(_translated_names)]


@router.get("/newsletters")
def newsletters_page(request: Request, admin: Admin, session: SessionDep) -> HTMLResponse:
    return _page(request, admin, session)


@router.post("/newsletters")
def add_newsletter(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    names: TranslatedNames,
    slug: ShortText = "",
    name: ShortText = "",
    language: ShortText = "",
    time_zone: ShortText = "",
    cron: ShortText = "",
    description: LongText = "",
) -> Response:
    form = {
        "slug": slug,
        "name": name,
        "language": language,
        "time_zone": time_zone,
        "cron": cron,
        "description": description,
        **{f"name_{code}": text for code, text in names.names.items()},
        **{f"description_{code}": text for code, text in names.descriptions.items()},
    }
    try:
        schedules.add_newsletter(
            session,
            slug=slug,
            name=name,
            language=language,
            time_zone=time_zone,
            cron=cron or None,
            description=description,
            names=names.names,
            descriptions=names.descriptions,
        )
    except InvalidInput as exc:
        session.rollback()
        return _page(request, admin, session, error=exc.message, form=form, status_code=422)
    session.commit()
    return redirect("/admin/newsletters", f"Newsletter {slug.strip().lower()} added.")


@router.post("/newsletters/{slug}/schedule")
def set_schedule(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    slug: str,
    cron: ShortText = "",
    time_zone: ShortText = "",
    clock_of: Annotated[str, Form(alias="clock", max_length=20)] = "",
    action: ShortText = "set",
) -> Response:
    clearing = action == "clear"
    # "readers": the cron is read on each reader's own clock (sent in waves); "newsletter":
    # on the newsletter's; anything else (a form without the choice) keeps what it was.
    in_reader_zones = {"readers": True, "newsletter": False}.get(clock_of.strip())
    if not clearing and not cron.strip():
        return _page(
            request,
            admin,
            session,
            error=f"{slug}: give a schedule in cron form, or press “Clear schedule”.",
            status_code=422,
        )
    try:
        newsletter = schedules.set_schedule(
            session,
            slug=slug,
            cron=None if clearing else cron,
            time_zone=None if clearing or not time_zone.strip() else time_zone,
            in_reader_zones=None if clearing else in_reader_zones,
        )
    except UnknownNewsletter as exc:
        session.rollback()
        return _page(request, admin, session, error=str(exc), status_code=404)
    except InvalidInput as exc:
        session.rollback()
        return _page(request, admin, session, error=f"{slug}: {exc.message}", status_code=422)
    session.commit()
    if newsletter.schedule_cron is None:
        return redirect("/admin/newsletters", f"{newsletter.slug}: no schedule any more.")
    words = schedules.describe_schedule(newsletter.schedule_cron)
    if newsletter.schedule_in_reader_zones:
        return redirect(
            "/admin/newsletters",
            f"{newsletter.slug}: {words} on each reader's own clock, in waves "
            f"(readers without a zone: {newsletter.time_zone}).",
        )
    return redirect("/admin/newsletters", f"{newsletter.slug}: {words} ({newsletter.time_zone}).")


@router.post("/newsletters/{slug}/names")
def set_names(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    slug: str,
    names: TranslatedNames,
) -> Response:
    """The newsletter's name and description in the readers' languages (empty: its own)."""
    try:
        translate_newsletter(session, slug=slug, names=names.names, descriptions=names.descriptions)
    except UnknownNewsletter as exc:
        session.rollback()
        return _page(request, admin, session, error=str(exc), status_code=404)
    except InvalidInput as exc:
        session.rollback()
        return _page(request, admin, session, error=f"{slug}: {exc.message}", status_code=422)
    session.commit()
    return redirect("/admin/newsletters", f"{slug}: names in each language saved.")


@router.post("/newsletters/{slug}/order")
def set_order(
    request: Request,
    admin: AdminForm,
    session: SessionDep,
    slug: str,
    order: Annotated[Literal["editor", "clicks"], Form()],
) -> Response:
    """How each reader's stories are ordered after the editor's pins and priority."""
    try:
        set_click_order(session, slug=slug, on=order == "clicks")
    except UnknownNewsletter as exc:
        session.rollback()
        return _page(request, admin, session, error=str(exc), status_code=404)
    session.commit()
    words = "then by readers' clicks" if order == "clicks" else "then newest first"
    return redirect("/admin/newsletters", f"{slug}: stories ordered by priority, {words}.")


def _page(
    request: Request,
    admin: SignedIn,
    session: Session,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = get_settings()
    rows: list[dict[str, Any]] = schedules.describe_newsletters(session)
    for row in rows:
        row["schedule_words"] = (
            schedules.describe_schedule(row["schedule"]) if row["schedule"] else None
        )
        row["next_local"] = _local_time(row["next_due"], row["time_zone"])
        row["waves"] = [
            wave.as_dict()
            for wave in schedules.day_waves(session, get_by_slug(session, row["slug"]))
        ]
    return admin_page(
        request,
        "newsletters.html",
        admin,
        {
            "newsletters": rows,
            "languages": LANGUAGES,
            "language_names": LANGUAGE_NAMES,
            "error": error,
            "form": form
            or {
                "slug": "",
                "name": "",
                "language": settings.default_language,
                "time_zone": settings.default_time_zone,
                "cron": "",
                "description": "",
            },
        },
        status_code=status_code,
    )


def _local_time(iso: str | None, time_zone: str) -> str | None:
    """A due time on the newsletter's own wall clock, as its readers will see it."""
    return None if iso is None else clock.local_text(datetime.fromisoformat(iso), time_zone)
