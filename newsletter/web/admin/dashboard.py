"""Admin dashboard: the home page, health at a glance."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from newsletter.web.admin.auth import Admin, admin_page

router = APIRouter(prefix="/admin", include_in_schema=False)


@router.get("")
def home(request: Request, admin: Admin) -> HTMLResponse:
    return admin_page(request, "dashboard.html", admin)
