"""Security headers Django 5.2 does not set by itself."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.utils.decorators import sync_and_async_middleware

# Only the site's own scripts run: no inline script, no third-party origin.
# The dashboard's data travels in a json_script block, which is not executed.
# Inline styles stay allowed because the Django admin uses style attributes.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)


@sync_and_async_middleware
def content_security_policy(get_response):
    """Adds the Content-Security-Policy header to every HTTP response (sync or async)."""
    policy = getattr(settings, "CONTENT_SECURITY_POLICY", DEFAULT_CSP)

    if iscoroutinefunction(get_response):

        async def middleware(request):
            response = await get_response(request)
            response.headers.setdefault("Content-Security-Policy", policy)
            return response

    else:

        def middleware(request):
            response = get_response(request)
            response.headers.setdefault("Content-Security-Policy", policy)
            return response

    return middleware
