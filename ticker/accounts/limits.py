"""Sign-up failures counted per client address (issue 23): past TICKER_SIGNUP_FAILURE_LIMIT within the login
cool-off, that address gets the "too many attempts" page (429) until the cool-off passes.

Logins are django-axes' (the admin's lockout, ticker.edge.lockout): the login form passes the request to
``authenticate``, so axes counts and locks them. A sign-up authenticates nobody, so axes does not see it; the
count is kept the same way, in the database (``SignUpFailures``), by the address axes uses
(ticker.edge.security.client_address), so every web process counts the same failures: in each process's memory
(Django's default cache, as it was) an address behind a proxy that spreads requests over N processes had N
times the limit.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.http import HttpRequest
from django.utils import timezone

from ticker.edge.security import client_address
from ticker.models import SignUpFailures


def cool_off_seconds() -> int:
    return max(1, round(settings.TICKER_LOGIN_COOLOFF_MINUTES * 60))


def _cooled_before(now):
    return now - timedelta(seconds=cool_off_seconds())


def signup_locked(request: HttpRequest) -> bool:
    recent = SignUpFailures.objects.filter(address=client_address(request), last_at__gt=_cooled_before(timezone.now()))
    return (recent.values_list("failures", flat=True).first() or 0) >= settings.TICKER_SIGNUP_FAILURE_LIMIT


def count_signup_failure(request: HttpRequest) -> None:
    """One more failed sign-up from this address; each failure starts the cool-off again (as axes' does). One
    statement a failure (two for an address's first), so failures on several processes at once all count."""
    now, address = timezone.now(), client_address(request)
    cooled = _cooled_before(now)
    counted = Case(When(last_at__gt=cooled, then=F("failures") + 1), default=Value(1))
    row = SignUpFailures.objects.filter(address=address)
    if not row.update(failures=counted, last_at=now):
        try:
            with transaction.atomic():
                SignUpFailures.objects.create(address=address, failures=1, last_at=now)
        except IntegrityError:  # another process counted this address's first failure meanwhile
            row.update(failures=counted, last_at=now)
    SignUpFailures.objects.filter(last_at__lte=cooled).delete()  # addresses whose cool-off has passed
