"""Security headers Django 5.2 does not set by itself, and static files without a thread per request."""

from __future__ import annotations

import gzip
import io
import os
import threading

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.utils.decorators import sync_and_async_middleware
from whitenoise.middleware import WhiteNoiseFileResponse, WhiteNoiseMiddleware

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

    def serve(self, static_file, request):
        """WhiteNoise's answer; gzipped here when WhiteNoise has no compressed copy to send (debug only)."""
        if self.autorefresh and "W/" in request.META.get("HTTP_IF_NONE_MATCH", ""):
            # The gzipped answer's ETag is the weak form of the file's (below); If-None-Match compares weakly
            # (RFC 9110 13.1.2), while WhiteNoise compares the strings: give it the strong form.
            request.META["HTTP_IF_NONE_MATCH"] = request.META["HTTP_IF_NONE_MATCH"].replace("W/", "")
        response = super().serve(static_file, request)
        if self.autorefresh:
            return gzipped_in_development(response, request)
        return response


# In debug (the run command, DJANGO_DEBUG=1) WhiteNoise serves straight from the source folders, where no
# gzipped copies exist (collectstatic makes them for production): without this the dashboard's first load
# was 369 KB at 5,000 symbols, the chart library alone 196 KB (issue 20). Kept per file path and ETag (the
# file's mtime and size), so an edited file is compressed again on its next request.
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")
MIN_COMPRESS_BYTES = 1024
_gzipped: dict[str, tuple[str, bytes]] = {}
_gzipped_lock = threading.Lock()


def gzipped_in_development(response: WhiteNoiseFileResponse, request) -> WhiteNoiseFileResponse:
    """A whole-file 200 answer of a text file, gzipped when the browser takes gzip; anything else as it was."""
    media_type = response.get("Content-Type", "")
    if not media_type.startswith(COMPRESSIBLE):
        return response
    response.headers["Vary"] = "Accept-Encoding"
    if (
        response.status_code != 200
        or request.method != "GET"
        or "Content-Encoding" in response
        or not accepts_gzip(request.META.get("HTTP_ACCEPT_ENCODING", ""))
        or int(response.get("Content-Length", 0)) < MIN_COMPRESS_BYTES
    ):
        return response
    path = os.path.realpath(response.file_to_stream.name)
    etag = response["ETag"]
    with _gzipped_lock:
        cached = _gzipped.get(path)
    if cached is None or cached[0] != etag:
        with response.file_to_stream as file:
            cached = (etag, gzip.compress(file.read(), compresslevel=6, mtime=0))
        with _gzipped_lock:
            _gzipped[path] = cached
    else:
        response.file_to_stream.close()
    compressed = WhiteNoiseFileResponse(io.BytesIO(cached[1]), status=200)
    del compressed["Content-Type"]
    for name, value in response.items():
        compressed[name] = value
    compressed["Content-Encoding"] = "gzip"
    compressed["Content-Length"] = str(len(cached[1]))
    # Another representation of the same file: a strong ETag must differ between them (RFC 9110 8.8.3), a weak
    # one says "the same content" and may be shared, as nginx's gzip makes it.
    if not etag.startswith("W/"):
        compressed["ETag"] = "W/" + etag
    return compressed


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip: listed (or ``*``, when gzip is not) with a q above 0."""
    weights: dict[str, float] = {}
    for part in accept_encoding.split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding:
            weights[coding.lower()] = weight
    return weights.get("gzip", weights.get("*", 0.0)) > 0
