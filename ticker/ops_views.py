"""The admin's operations view (/admin/ops/): a page, and the JSON it polls every second. Staff only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from . import ops


@require_GET
def page(request: HttpRequest) -> HttpResponse:
    """GET /admin/ops/: the live view of every web process, the market, Redis and the database."""
    context = {**admin.site.each_context(request), "title": "Operations"}
    return TemplateResponse(request, "admin/ticker/ops.html", context)


@require_GET
async def data(request: HttpRequest) -> HttpResponse:
    """GET /admin/ops/data/: every live process's report (ticker.ops) as JSON; 403 for anyone but staff."""
    user = await request.auser()
    if not (user.is_active and user.is_staff):
        return JsonResponse(
            {"type": "error", "code": "forbidden", "message": "Staff only: sign in at /admin/ as a staff user."},
            status=403,
        )
    return JsonResponse(await ops.read_reports(), headers={"Cache-Control": "no-store"})


# The page goes through the admin's own check (staff, else the admin's sign-in page).
page = admin.site.admin_view(page)
