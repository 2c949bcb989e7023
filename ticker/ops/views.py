"""The admin's operations view (/admin/ops/): a page, and the JSON it polls every second.

For staff with the ``ticker.view_operations`` permission (superusers have it): the view shows host names,
PIDs, memory, the Redis version and the database vendor, which issue 21 found open to every staff user.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from ticker.ops import registry as ops

PERMISSION = "ticker.view_operations"


@require_GET
def page(request: HttpRequest) -> HttpResponse:
    """GET /admin/ops/: the live view of every web process, the market, Redis and the database."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied(f"The operations view needs the {PERMISSION} permission.")
    context = {**admin.site.each_context(request), "title": "Operations"}
    return TemplateResponse(request, "admin/ticker/ops.html", context)


@require_GET
async def data(request: HttpRequest) -> HttpResponse:
    """GET /admin/ops/data/: every live process's report (ticker.ops.registry) as JSON; 403 for anyone else."""
    user = await request.auser()
    if not (user.is_active and user.is_staff and await user.ahas_perm(PERMISSION)):
        return JsonResponse(
            {
                "type": "error",
                "code": "forbidden",
                "message": f"Staff with the {PERMISSION} permission only: sign in at /admin/ as such a user.",
            },
            status=403,
        )
    return JsonResponse(await ops.read_reports(), headers={"Cache-Control": "no-store"})


# The page goes through the admin's own check first (staff, else the admin's sign-in page).
page = admin.site.admin_view(page)
