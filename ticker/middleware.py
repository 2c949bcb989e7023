"""Security headers Django 5.2 does not set by itself, and static files without a thread per request."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.utils.decorators import sync_and_async_middleware
from whitenoise.middleware import WhiteNoiseMiddleware

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


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, able to sit in an async middleware chain.

    WhiteNoise 6 is sync-only, and one sync middleware makes Django run the
    whole chain below it in a worker thread: every async view (long-poll,
    SSE) then held a thread for as long as it waited, and a SIGTERM left
    those threads blocked so daphne never exited. This subclass looks the
    file up the same way and, for everything else, awaits the async chain.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)
