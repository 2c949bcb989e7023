"""HTTP views: the dashboard and the polling baseline. Thin: parse, read, render."""

from __future__ import annotations

import hashlib

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.http import parse_etags
from django.views.decorators.http import require_GET

from . import protocol, selectors

HISTORY_DEFAULT, HISTORY_MAX = 240, 2400


def error(status: int, code: str, message: str, **extra) -> JsonResponse:
    return JsonResponse({"type": "error", "code": code, "message": message, **extra}, status=status)


def _symbols_param(request: HttpRequest) -> list[str] | None:
    raw = request.GET.get("symbols", "").strip()
    if not raw or raw == protocol.ALL:
        return None
    symbols = list(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
    if len(symbols) > protocol.MAX_SYMBOLS_PER_MESSAGE:
        raise ValueError(f"At most {protocol.MAX_SYMBOLS_PER_MESSAGE} symbols per request.")
    return symbols


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    stocks = list(selectors.listed_stocks())
    quotes = [protocol.quote(selectors.tick_of(s)) for s in stocks]
    return render(
        request,
        "ticker/dashboard.html",
        {
            "stocks": stocks,
            "initial": {
                "step": max((s.step for s in stocks), default=0),
                "quotes": quotes,
                "names": {s.symbol: s.name for s in stocks},
            },
        },
    )


@require_GET
def quotes(request: HttpRequest) -> HttpResponse:
    """GET /api/quotes/?symbols=A,B: the latest quotes, with an ETag for cheap re-polls."""
    try:
        symbols = _symbols_param(request)
    except ValueError as exc:
        return error(400, "too_many_symbols", str(exc))
    stocks = list(selectors.listed_stocks(symbols))
    if symbols is not None:
        unknown = sorted(set(symbols) - {s.symbol for s in stocks})
        if unknown:
            return error(400, "unknown_symbol", f"Unknown symbol(s): {', '.join(unknown)}.", symbols=unknown)
    # step: the latest market step among the returned quotes, so a filtered
    # poll of quiet (e.g. halted) symbols keeps its ETag and gets 304s.
    step = max((s.step for s in stocks), default=0)
    body = protocol.encode({"step": step, "quotes": [protocol.quote(selectors.tick_of(s)) for s in stocks]}).encode()
    etag = f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag in parse_etags(request.headers.get("If-None-Match", "")):
        return HttpResponse(status=304, headers=headers)
    return HttpResponse(body, content_type="application/json", headers=headers)


@require_GET
def history(request: HttpRequest, symbol: str) -> HttpResponse:
    """GET /api/quotes/<symbol>/history/?limit=N: recent prices, oldest first, for the chart."""
    symbol = symbol.upper()
    try:
        limit = int(request.GET.get("limit", HISTORY_DEFAULT))
    except ValueError:
        return error(400, "bad_limit", f"limit must be a whole number from 1 to {HISTORY_MAX}.")
    if not 1 <= limit <= HISTORY_MAX:
        return error(400, "bad_limit", f"limit must be a whole number from 1 to {HISTORY_MAX}.")
    if not selectors.listed_stocks([symbol]).exists():
        return error(404, "unknown_symbol", f"Unknown symbol: {symbol}.", symbols=[symbol])
    return JsonResponse({"symbol": symbol, "points": selectors.history(symbol, limit=limit)})
