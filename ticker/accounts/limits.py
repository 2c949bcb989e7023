"""Sign-up failures counted per client address (issue 23): past TICKER_SIGNUP_FAILURE_LIMIT within the login
cool-off, that address gets the "too many attempts" page (429) until the cool-off passes.

Logins are django-axes' (the admin's lockout, ticker.edge.lockout): the login form passes the request to
``authenticate``, so axes counts and locks them. A sign-up authenticates nobody, so axes does not see it;
the count lives in Django's cache, keyed by the address axes uses (ticker.edge.security.client_address).
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from ticker.edge.security import client_address


def _key(request: HttpRequest) -> str:
    return f"ticker:signup-failures:{client_address(request)}"


def cool_off_seconds() -> int:
    return max(1, round(settings.TICKER_LOGIN_COOLOFF_MINUTES * 60))


def signup_locked(request: HttpRequest) -> bool:
    return cache.get(_key(request), 0) >= settings.TICKER_SIGNUP_FAILURE_LIMIT


def count_signup_failure(request: HttpRequest) -> None:
    """One more failed sign-up from this address; each failure starts the cool-off again (as axes' does)."""
    key = _key(request)
    cache.set(key, cache.get(key, 0) + 1, timeout=cool_off_seconds())
