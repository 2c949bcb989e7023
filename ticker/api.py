"""The JSON data API: a symbol's history and candles, sparklines, symbol search, and the JSON 404 of
any other /api/ path. Read from the database (ticker.market.selectors), never from the hub."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt

from ticker.edge.http import STEP, answer_errors, could_be_listed, read_only, symbols_param
from ticker.market import selectors
from ticker.wire import protocol
from ticker.wire.protocol import ProtocolError

# History's default: four hours of minute closes (or all the market keeps, if less).
HISTORY_DEFAULT = 240
# Candles: a two-hour chart by default (MARKET_CANDLE_MINUTES is the most kept).
CANDLES_DEFAULT = 120
# Symbol search (/api/symbols/).
SEARCH_MAX_CHARS, SEARCH_DEFAULT, SEARCH_MOST = 40, 20, 50


@read_only
def history(request: HttpRequest, symbol: str) -> HttpResponse:
    """GET /api/quotes/<symbol>/history/?limit=N: the last N one-minute closes, oldest first (the candles' closes).

    Kept for clients of the per-step history, which the market no longer
    stores (docs/protocol.md); new clients read /candles/.
    """
    symbol = symbol.upper()
    most = settings.MARKET_CANDLE_MINUTES  # everything the market keeps, and no more
    limit = _limit_param(request, default=min(HISTORY_DEFAULT, most), most=most)
    if not could_be_listed(symbol) or not selectors.listed_stocks([symbol]).exists():
        raise protocol.unknown_symbols([symbol], status=404)
    return JsonResponse({"symbol": symbol, "points": selectors.history(symbol, limit=limit)})


def _limit_param(request: HttpRequest, *, default: int, most: int) -> int:
    """``?limit=N``, a whole number from 1 to ``most``; raises ProtocolError ``bad_limit`` otherwise."""
    raw = request.GET.get("limit", str(default))
    if not STEP.fullmatch(raw) or not 1 <= int(raw) <= most:
        raise ProtocolError("bad_limit", f"limit must be a whole number from 1 to {most}.")
    return int(raw)


@read_only
def candles(request: HttpRequest, symbol: str) -> HttpResponse:
    """GET /api/quotes/<symbol>/candles/?limit=N: one-minute OHLCV candles, oldest first, the current minute last."""
    symbol = symbol.upper()
    limit = _limit_param(
        request, default=min(CANDLES_DEFAULT, settings.MARKET_CANDLE_MINUTES), most=settings.MARKET_CANDLE_MINUTES
    )
    if not could_be_listed(symbol) or not selectors.listed_stocks([symbol]).exists():
        raise protocol.unknown_symbols([symbol], status=404)
    return JsonResponse({"symbol": symbol, "interval_s": 60, "candles": selectors.candles(symbol, limit=limit)})


@read_only
def sparklines(request: HttpRequest) -> HttpResponse:
    """GET /api/quotes/sparklines/?symbols=A,B: the last hour of one-minute closes of each symbol, in one answer."""
    symbols = symbols_param(request)
    if symbols is None:
        raise ProtocolError("bad_symbols", "sparklines needs symbols: a comma-separated list such as AAPL,MSFT.")
    lines = selectors.sparklines([s for s in symbols if could_be_listed(s)])
    if unknown := sorted(set(symbols) - set(lines)):
        raise protocol.unknown_symbols(unknown)
    return JsonResponse({"sparklines": lines})


@read_only
def symbols(request: HttpRequest) -> HttpResponse:
    """GET /api/symbols/?q=TEXT&limit=N: search the listed symbols by symbol (prefix first), then by name."""
    text = request.GET.get("q", "").strip()
    if not 1 <= len(text) <= SEARCH_MAX_CHARS or "\x00" in text:
        raise ProtocolError("bad_query", f"q is the text to search for: 1 to {SEARCH_MAX_CHARS} characters.")
    limit = _limit_param(request, default=SEARCH_DEFAULT, most=SEARCH_MOST)
    return JsonResponse({"results": selectors.search(text, limit=limit)})


@csrf_exempt
@answer_errors
def api_not_found(request: HttpRequest, rest: str) -> HttpResponse:
    """Any path under /api/ that no endpoint answers: a JSON 404 like every other API error (issue 20), never
    Django's HTML page. A path that only lacks its trailing slash is redirected as APPEND_SLASH would."""
    path = request.path
    if not path.endswith("/"):
        try:
            match = resolve(path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            query = request.META.get("QUERY_STRING", "")
            return HttpResponsePermanentRedirect(path + "/" + (f"?{query}" if query else ""))
    raise ProtocolError(
        "not_found",
        f"No API endpoint at {protocol.quoted(path, 80)}: see docs/protocol.md for the endpoints.",
        status=404,
    )
