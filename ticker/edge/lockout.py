"""The admin's login lockout: django-axes' per (username, address) lock, plus a lock that follows the username.

Issue 21 (item 4): counting failures per (username, address) only let a guesser spread its guesses over
addresses (80 wrong passwords for ``admin`` from 20 loopback addresses locked nothing; with IPv6 a /64 gives
unlimited addresses). So a username is also locked, from every address, once it has
TICKER_LOGIN_FAILURE_LIMIT_PER_USER failures within the cool-off, whatever addresses they came from.

django-axes 8.3 compares one number, the handler's ``get_failures()``, with one limit, AXES_FAILURE_LIMIT
(a callable limit is not told which lockout parameter it is for). So the per-username rule lives in a
handler (AXES_HANDLER, a documented setting) that subclasses axes' own database handler and overrides
``get_failures`` (the method axes' base handler declares for handlers to implement): past the per-username
limit it answers the per-pair limit, which axes reads as locked. The lockout page is rendered by
AXES_LOCKOUT_CALLABLE (documented) so that it can say which lock holds. Both are checked by
tests/test_admin.py. The records are axes' own (AccessAttempt), so ``axes_reset_username`` lifts both locks.
"""

from __future__ import annotations

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def username_failures(request: HttpRequest, username: str | None) -> int:
    """Failed logins for ``username`` from any address within the cool-off (0 for no username)."""
    if not username:
        return 0
    attempts = AccessAttempt.objects.filter(username=username, attempt_time__gte=get_cool_off_threshold(request))
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


def username_locked(request: HttpRequest, credentials: dict | None) -> bool:
    """Whether the username these credentials name is locked from every address."""
    username = get_client_username(request, credentials)
    return username_failures(request, username) >= settings.TICKER_LOGIN_FAILURE_LIMIT_PER_USER


class LoginLockout(AxesDatabaseHandler):
    """axes' database handler, with the per-username limit on top of its per (username, address) count."""

    def get_failures(self, request, credentials: dict | None = None) -> int:
        pair = super().get_failures(request, credentials)
        if username_locked(request, credentials):
            return max(pair, get_failure_limit(request, credentials))
        return pair


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """The answer to a locked-out login (AXES_LOCKOUT_CALLABLE): axes' own page context, and which lock holds."""
    per_username = username_locked(request, credentials)
    context = {
        "failure_limit": (
            settings.TICKER_LOGIN_FAILURE_LIMIT_PER_USER if per_username else get_failure_limit(request, credentials)
        ),
        "username": get_client_username(request, credentials) or "",
        "per_username": per_username,
    }
    cool_off = get_cool_off(request)
    if request.META.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
        minutes = cool_off.total_seconds() / 60 if cool_off else None
        return JsonResponse({**context, "cooloff_minutes": minutes}, status=settings.AXES_HTTP_RESPONSE_CODE)
    context["cooloff_timedelta"] = cool_off
    # The site's own sign-in (issue 23, ticker/accounts/) says it in the site's look; the admin's in the admin's.
    template = "accounts/lockout.html" if request.path.startswith("/accounts/") else settings.AXES_LOCKOUT_TEMPLATE
    return render(request, template, context, status=settings.AXES_HTTP_RESPONSE_CODE)
