"""The pages: the market screen (its first paint rendered here) and the Lab, with the Lab's handshake capture."""

from __future__ import annotations

import asyncio
import importlib

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


@page
def dashboard(request: HttpRequest) -> HttpResponse:
    """The market screen: the default watchlist's rows (first paint), the rest built by static/ticker/js/main.js.

    The rows' numbers go out as the quotes have them, unformatted: a page without scripts shows them so.
    The script writes them again with the one formatter there is (render.js), from the same quotes in the
    json_script block, as soon as it runs and before any frame of the feed.
    """
    listed = selectors.listed(DEFAULT_WATCHLIST)
    if not listed.stocks:  # a market without the seeded names: its first few symbols
        listed = selectors.Listed(list(selectors.listed_stocks()[: len(DEFAULT_WATCHLIST)]))
    quotes = listed.quotes()
    rows = [quote | {"name": stock.name} for stock, quote in zip(listed.stocks, quotes, strict=True)]
    initial = {
        "step": listed.step,
        "quotes": quotes,
        "defaults": [{"symbol": s.symbol, "name": s.name} for s in listed.stocks],
        # The market session as stored ({"state", "until"}), shown before the feed's first frame says it.
        "session": getattr(listed, "session", None),
    }
    # The row the script clones for a symbol added later: no quote yet.
    blank = {"symbol": "", "name": "", "halted": False, "seq": None}
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
    """GET /api/lab/handshake/: a real WebSocket opening handshake with this server, byte for byte.

    It carries the page's own cookies, as the browser's upgrade does, and says which user the server saw on
    that socket (``user``: a username, or null for anonymous); the cookie values are masked in what it shows.
    """
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
            cookie=request.headers.get("Cookie"),
        )
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        raise ProtocolError(
            "handshake_failed", f"Could not open a WebSocket to this server: {exc}.", status=502
        ) from None
    return JsonResponse(captured)
