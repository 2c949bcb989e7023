"""``/api/watchlist/``: the signed-in user's watchlist (docs/protocol.md, "Watchlist").

GET answers ``{"symbols": [...]}``; PUT ``{"symbols": [...]}`` replaces it, checked whole before anything is
stored (listed symbols only, each once, at most WATCHLIST_MOST_SYMBOLS), then tells the user's other
connections (a ``watchlist`` personal frame through the channel layer, ticker.wire.personal). Every error is
the project's JSON error (ticker.edge.http.answer_errors), CSRF's included.
"""

from __future__ import annotations

import json
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ticker.edge.http import answer_errors, check_csrf, could_be_listed, method_not_allowed
from ticker.models import WATCHLIST_MOST_SYMBOLS, Stock, Watchlist
from ticker.wire import personal, protocol
from ticker.wire.protocol import ProtocolError

log = logging.getLogger(__name__)
METHODS = ("GET", "HEAD", "PUT")
# A body bigger than this is no watchlist (50 symbols of at most a few characters each).
MOST_BODY_BYTES = 16 * 1024


def signed_in_user(request: HttpRequest):
    if not request.user.is_authenticated:
        raise ProtocolError(
            "not_signed_in", "Sign in to keep a watchlist on your account (/accounts/login/).", status=401
        )
    return request.user


def stored(user) -> list[str]:
    return list(Watchlist.objects.filter(user=user).values_list("symbols", flat=True).first() or [])


def parse_symbols(body: bytes) -> list[str]:
    """The body's symbols, upper-cased, in order; raises ProtocolError naming what is wrong with it."""
    shape = 'The body is JSON {"symbols": ["AAPL", "MSFT", ...]}'
    if len(body) > MOST_BODY_BYTES:
        raise ProtocolError("bad_watchlist", f"{shape}, at most {MOST_BODY_BYTES} bytes.", status=413)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("bad_json", f"The body is not JSON. {shape}.") from None
    if not isinstance(data, dict) or set(data) != {"symbols"} or not isinstance(data["symbols"], list):
        raise ProtocolError("bad_watchlist", f"{shape}, and nothing else.")
    if not all(isinstance(symbol, str) for symbol in data["symbols"]):
        raise ProtocolError("bad_watchlist", f"{shape}: every symbol is a string.")
    symbols = [symbol.strip().upper() for symbol in data["symbols"]]
    if len(symbols) > WATCHLIST_MOST_SYMBOLS:
        raise ProtocolError(
            "too_many_symbols",
            f"A watchlist holds at most {WATCHLIST_MOST_SYMBOLS} symbols; this one has {len(symbols)}.",
            most=WATCHLIST_MOST_SYMBOLS,
        )
    if duplicates := sorted({s for s in symbols if symbols.count(s) > 1}):
        named = ", ".join(protocol.quoted(s) for s in duplicates[: protocol.QUOTED_SYMBOLS])
        raise ProtocolError(
            "duplicate_symbols", f"Each symbol may be on the watchlist once: {named} repeated.", symbols=duplicates
        )
    return symbols


def check_listed(symbols: list[str]) -> None:
    """Raises ``unknown_symbol`` naming every symbol that is not listed: never listed, or delisted (inactive)."""
    shaped = [s for s in symbols if could_be_listed(s)]
    active = dict(Stock.objects.filter(symbol__in=shaped).values_list("symbol", "active"))
    refused = [s for s in symbols if not active.get(s)]
    if refused:
        error = protocol.unknown_symbols(refused)
        error.extra["delisted"] = [s for s in refused if s in active]
        raise error


def publish(user_id: int, symbols: list[str]) -> None:
    """Tells the user's other connections, on every web process; a failure is logged, the change stays stored."""
    try:
        layer = get_channel_layer()
        event = personal.message([(user_id, personal.watchlist_frame(symbols))])
        async_to_sync(layer.group_send)(personal.PERSONAL_GROUP, event)
    except Exception:
        log.exception("watchlist of user %s stored, but its change could not be published", user_id)


@csrf_exempt  # checked below by Django's own rule, answered as JSON (check_csrf)
@answer_errors
def watchlist(request: HttpRequest) -> HttpResponse:
    """GET/HEAD: ``{"symbols": [...]}``. PUT ``{"symbols": [...]}``: replaced, and the stored list answered."""
    if request.method not in METHODS:
        raise method_not_allowed(request, METHODS, "GET reads the watchlist, PUT replaces it")
    user = signed_in_user(request)
    if request.method != "PUT":
        return JsonResponse({"symbols": stored(user)})
    check_csrf(request)
    symbols = parse_symbols(request.body)
    check_listed(symbols)
    Watchlist.objects.update_or_create(user=user, defaults={"symbols": symbols})
    publish(user.id, symbols)
    return JsonResponse({"symbols": symbols})
