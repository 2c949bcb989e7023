"""What every HTTP endpoint shares: the method check, the one error path, and the query parameters
that more than one endpoint reads. Imported by the streaming transports (ticker.edge.streams), the
JSON data API (ticker.api) and the pages (ticker.views)."""

from __future__ import annotations

import functools
import inspect
import re

from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from ticker.models import symbol_validator
from ticker.wire import protocol
from ticker.wire.protocol import ProtocolError

# A market step as a client sends it back (since=, Last-Event-ID): ASCII digits
# only, as str.isdigit() also takes "²", which int() refuses; and short enough
# for int(), which refuses strings of more than 4300 digits.
STEP = re.compile(r"[0-9]{1,19}")
# What every API view answers; anything else is a 405 (docs/protocol.md, "HTTP errors").
READ_METHODS = ("GET", "HEAD")


def answer_errors(view):
    """The one HTTP error path: a ProtocolError raised by the view becomes its JSON error answer."""

    def answer(error: ProtocolError) -> JsonResponse:
        response = JsonResponse(error.frame(), status=error.status)
        for name, value in error.headers.items():
            response[name] = value
        return response

    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_view(request, *args, **kwargs):
            try:
                return await view(request, *args, **kwargs)
            except ProtocolError as error:
                return answer(error)

        return async_view

    @functools.wraps(view)
    def sync_view(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ProtocolError as error:
            return answer(error)

    return sync_view


def read_only(view):
    """An API view: GET and HEAD, any other method a JSON 405 with ``Allow``; errors answered by ``answer_errors``.

    Exempt from CSRF: the check protects views that change something, and these
    change nothing. Without the exemption CsrfViewMiddleware answers a POST
    before the view runs, with its HTML 403 page instead of the documented 405.
    """

    def refuse_other_methods(request: HttpRequest) -> None:
        if request.method not in READ_METHODS:
            raise method_not_allowed(request, READ_METHODS, "this endpoint only reads (GET, HEAD)")

    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def checked(request, *args, **kwargs):
            refuse_other_methods(request)
            return await view(request, *args, **kwargs)

    else:

        @functools.wraps(view)
        def checked(request, *args, **kwargs):
            refuse_other_methods(request)
            return view(request, *args, **kwargs)

    return csrf_exempt(answer_errors(checked))


def page(view):
    """A page: GET and HEAD (any other method a 405 with ``Allow``), exempt from CSRF as it changes nothing."""
    return csrf_exempt(require_safe(view))


def symbols_param(request: HttpRequest) -> list[str] | None:
    """The ``?symbols=A,B`` filter: None for all (absent, empty or ``*``); raises ProtocolError when unusable."""
    raw = request.GET.get("symbols", "").strip()
    if not raw or raw == protocol.ALL:
        return None
    symbols = list(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
    if not symbols:
        raise ProtocolError("bad_symbols", 'symbols is a comma-separated list such as AAPL,MSFT, or "*" for all.')
    if len(symbols) > protocol.MAX_SYMBOLS_PER_MESSAGE:
        raise ProtocolError("too_many_symbols", f"At most {protocol.MAX_SYMBOLS_PER_MESSAGE} symbols per request.")
    if protocol.ALL in symbols:
        raise ProtocolError("bad_symbols", '"*" means every symbol; send it alone.')
    return symbols


def could_be_listed(symbol: str) -> bool:
    """Only strings shaped like a symbol reach the database (PostgreSQL refuses NUL in a query, a 500)."""
    return symbol_validator.regex.fullmatch(symbol) is not None


def method_not_allowed(request: HttpRequest, allowed: tuple[str, ...], hint: str) -> ProtocolError:
    """The one 405: the method named, ``hint`` saying what the endpoint takes, ``Allow`` listing it."""
    return ProtocolError(
        "method_not_allowed",
        f"{protocol.quoted(request.method or '')} is not allowed here: {hint}.",
        status=405,
        headers={"Allow": ", ".join(allowed)},
    )


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, answering the reason it refused instead of its HTML 403 page."""

    def _reject(self, request, reason):
        return reason


def check_csrf(request: HttpRequest) -> None:
    """Django's CSRF rule for a view that is ``csrf_exempt`` so that a refusal is the project's JSON 403."""
    reason = _CsrfCheck(lambda request: None).process_view(request, None, (), {})
    if reason is not None:
        raise ProtocolError(
            "csrf_failed",
            f"CSRF check failed ({reason}): send the value of the csrftoken cookie in the X-CSRFToken header.",
            status=403,
        )
