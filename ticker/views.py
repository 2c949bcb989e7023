"""The pages: the market screen (its first paint rendered here) and the Lab, with the Lab's handshake capture."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from ticker.edge import handshake
from ticker.edge.http import page, read_only
from ticker.market import selectors
from ticker.wire.protocol import ProtocolError

# A browser's first watchlist: the 30 symbols the data migration seeds, those still listed. The page
# renders just these (never every listed quote: an exchange lists thousands); the browser keeps the
# user's own list in localStorage (static/ticker/js/watchlist.js).
DEFAULT_WATCHLIST = tuple(row[0] for row in importlib.import_module("ticker.migrations.0002_seed_stocks").SEED)


def _signed(value: float, suffix: str = "") -> str:
    """As the browser writes it (quotes.js, formatSigned): "+0.15", "-0.15", "0.00"."""
    text = f"{value:.2f}{suffix}"
    return f"+{text}" if value > 0 else text


def _volume(value: Any) -> str:
    """As the browser writes it (quotes.js, formatVolume): 987, 12,345, 1.23M, 45.6M, 4.50B."""
    if not isinstance(value, int):
        return "—"
    if value < 100_000:
        return f"{value:,}"
    if value < 1_000_000_000:
        return f"{value / 1e6:.{2 if value < 10_000_000 else 1}f}M"
    return f"{value / 1e9:.2f}B"


def _price(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "—"


def _row(name: str, quote: dict[str, Any]) -> dict[str, Any]:
    """One row of the dashboard's first paint, formatted exactly as static/ticker/js/render.js formats it."""
    change = quote["change"]
    return {
        "symbol": quote["symbol"],
        "name": name,
        "halted": quote["halted"],
        "seq": quote["seq"],
        "price": _price(quote["price"]),
        "change": _signed(change),
        "change_pct": _signed(quote["change_pct"], "%"),
        "change_pct_value": quote["change_pct"],
        "trend": "up" if change > 0 else "down" if change < 0 else "",
        "arrow": "▲" if change > 0 else "▼" if change < 0 else "",
        "open": _price(quote.get("open")),
        "high": _price(quote.get("high")),
        "low": _price(quote.get("low")),
        "volume": _volume(quote.get("volume")),
    }


@page
def dashboard(request: HttpRequest) -> HttpResponse:
    """The market screen: the default watchlist rendered (first paint), the rest built by static/ticker/js/main.js."""
    listed = selectors.listed(DEFAULT_WATCHLIST)
    if not listed.stocks:  # a market without the seeded names: its first few symbols
        listed = selectors.Listed(list(selectors.listed_stocks()[: len(DEFAULT_WATCHLIST)]))
    quotes = listed.quotes()
    rows = [_row(stock.name, quote) for stock, quote in zip(listed.stocks, quotes, strict=True)]
    initial = {
        "step": listed.step,
        "quotes": quotes,
        "defaults": [{"symbol": s.symbol, "name": s.name} for s in listed.stocks],
        # The market session as stored ({"state", "until"}), shown before the feed's first frame says it.
        "session": getattr(listed, "session", None),
    }
    blank = {"symbol": "", "name": "", "halted": False, "seq": None, "trend": "", "arrow": ""}
    blank |= dict.fromkeys(("price", "change", "change_pct", "open", "high", "low", "volume"), "—")
    context = {"rows": rows, "blank_row": blank, "initial": initial}
    return render(request, "ticker/dashboard.html", context)


@page
def lab(request: HttpRequest) -> HttpResponse:
    """The Lab: the four transports side by side in the browser, measured."""
    transports = [
        ("websocket", "WebSocket"),
        ("sse", "Server-Sent Events"),
        ("longpoll", "Long-polling"),
        ("polling", "Polling (1 s)"),
    ]
    listed = selectors.listed_stocks().count()
    return render(request, "ticker/lab.html", {"listed": listed, "transports": transports})


@read_only
async def lab_handshake(request: HttpRequest) -> HttpResponse:
    """GET /api/lab/handshake/: a real WebSocket opening handshake with this server, byte for byte."""
    server = request.scope.get("server") if hasattr(request, "scope") else None
    host, port = server if server else ("127.0.0.1", int(request.get_port()))
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    try:
        captured = await handshake.capture(
            host=host,
            port=int(port),
            http_host=request.get_host(),
            origin=f"{request.scheme}://{request.get_host()}",
        )
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise ProtocolError(
            "handshake_failed", f"Could not open a WebSocket to this server: {exc}.", status=502
        ) from None
    return JsonResponse(captured)
