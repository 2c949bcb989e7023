"""HTTP views: the dashboard, polling, long-polling and Server-Sent Events. Thin: parse, read, render."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib
import inspect
import logging
import re
import weakref
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django.utils.cache import get_conditional_response
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from ticker.edge import admission, handshake, security, server
from ticker.hub import FeedUnavailable, Interest, QuoteHub, get_hub
from ticker.hub import interest as interests
from ticker.market import selectors
from ticker.models import symbol_validator
from ticker.ops import logs, metrics
from ticker.wire import protocol
from ticker.wire.protocol import ProtocolError

log = logging.getLogger(__name__)
# History's default: four hours of minute closes (or all the market keeps, if less).
HISTORY_DEFAULT = 240
# A browser's first watchlist: the 30 symbols the data migration seeds, those still listed. The page
# renders just these (never every listed quote: an exchange lists thousands); the browser keeps the
# user's own list in localStorage (static/ticker/js/watchlist.js).
DEFAULT_WATCHLIST = tuple(row[0] for row in importlib.import_module("ticker.migrations.0002_seed_stocks").SEED)
LONG_POLL_MAX_WAIT_S = 30.0
# Candles: a two-hour chart by default (MARKET_CANDLE_MINUTES is the most kept).
CANDLES_DEFAULT = 120
# Symbol search (/api/symbols/).
SEARCH_MAX_CHARS, SEARCH_DEFAULT, SEARCH_MOST = 40, 20, 50
# A stream whose reader falls this many steps behind is closed; the browser
# reconnects with Last-Event-ID and catches up from a snapshot.
SSE_MAX_QUEUED = 64
# A market step as a client sends it back (since=, Last-Event-ID): ASCII digits
# only, as str.isdigit() also takes "²", which int() refuses; and short enough
# for int(), which refuses strings of more than 4300 digits.
STEP = re.compile(r"[0-9]{1,19}")
# What every view here answers; anything else is a 405 (docs/protocol.md, "HTTP errors").
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
            raise ProtocolError(
                "method_not_allowed",
                f"{protocol.quoted(request.method or '')} is not allowed here: this endpoint only reads (GET, HEAD).",
                status=405,
                headers={"Allow": ", ".join(READ_METHODS)},
            )

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


def _tagged(request: HttpRequest, body: bytes) -> HttpResponse:
    """A JSON answer with a strong ETag of its body, or 304 when ``If-None-Match`` matches it.

    Django's conditional GET (RFC 9110 section 13.1.2): weak comparison, so a
    proxy's ``W/"..."`` matches, and ``*`` matches any current answer.
    """
    etag = f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
    response = HttpResponse(body, content_type="application/json", headers={"ETag": etag, "Cache-Control": "no-cache"})
    return get_conditional_response(request, etag=etag, response=response)


def _symbols_param(request: HttpRequest) -> list[str] | None:
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


def _step_param(raw: str | None, code: str, message: str) -> int | None:
    """A market step a client sends back (``since``, ``Last-Event-ID``), or None when absent."""
    if raw is None:
        return None
    if not STEP.fullmatch(raw):
        raise ProtocolError(code, message)
    return int(raw)


def _could_be_listed(symbol: str) -> bool:
    """Only strings shaped like a symbol reach the database (PostgreSQL refuses NUL in a query, a 500)."""
    return symbol_validator.regex.fullmatch(symbol) is not None


def _refuse_foreign_origin(request: HttpRequest) -> None:
    """403 unless the request's Origin is absent, its own, or trusted: the WebSocket's rule (ticker.edge.security)."""
    if not security.origin_allowed(request.headers.get("Origin"), security.request_origin(request)):
        raise ProtocolError(
            "foreign_origin",
            "This origin may not read the feed: only pages of this site (same scheme, host and port) "
            "or of DJANGO_CSRF_TRUSTED_ORIGINS may.",
            status=403,
        )


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


def _admit(request: HttpRequest, transport: str) -> admission.Slot:
    """A place in the process's connection cap for a stream or a long poll, or the 503 ``server_full``; or
    the 503 ``address_full`` when the client's address holds its share already (issue 21)."""
    try:
        return admission.connections().admit(security.client_address(request))
    except admission.Full as full:
        metrics.connection_refused(transport, full.reason)
        refusal = protocol.address_full if isinstance(full, admission.AddressFull) else protocol.server_full
        raise refusal(full.limit, full.retry_after_s) from None


async def _hub_and_interest(request: HttpRequest) -> tuple[QuoteHub, Interest]:
    """The process's hub and the ``?symbols=`` asked for, for the streaming and long-poll endpoints."""
    symbols = _symbols_param(request)
    try:
        hub = await get_hub()
    except FeedUnavailable as unavailable:
        raise protocol.unavailable(unavailable.retry_after_s) from None
    if symbols is not None and (unknown := [s for s in symbols if not hub.store.known(s)]):
        raise protocol.unknown_symbols(unknown)
    return hub, interests.of(symbols)


@read_only
async def quotes(request: HttpRequest) -> HttpResponse:
    """GET /api/quotes/: polling (latest quotes with an ETag), or long-polling with ?since= / ?wait=."""
    if "since" in request.GET or "wait" in request.GET:
        return await long_poll(request)
    return await sync_to_async(poll)(request)


async def long_poll(request: HttpRequest) -> HttpResponse:
    """GET /api/quotes/?since=STEP&wait=S: answer when a requested symbol changes after STEP, or after S seconds.

    The answer holds the latest quote of every requested symbol that changed
    after ``since``, and the step to pass as ``since`` next time. When
    ``wait`` runs out first the quotes list is empty.
    """
    _refuse_foreign_origin(request)
    try:
        wait = float(request.GET.get("wait", "0"))
        if not 0 <= wait <= LONG_POLL_MAX_WAIT_S:  # also refuses NaN and inf (issue 20: wait=100 was taken)
            raise ValueError
    except ValueError:
        raise ProtocolError(
            "bad_wait", f"wait must be a number of seconds from 0 to {LONG_POLL_MAX_WAIT_S:g}."
        ) from None
    since = _step_param(request.GET.get("since"), "bad_since", "since must be a market step: a whole number from 0.")
    hub, interest = await _hub_and_interest(request)
    # Admitted last, with no await before the try: every way out (an answer, a client that left and
    # cancelled the wait) gives the slot back.
    slot = _admit(request, "long_poll")
    metrics.connection_opened("long_poll")
    try:
        if since is not None and since > hub.step:
            # A cursor from the future: kept from another database, or a market that was reset. Waiting for
            # that step could take forever; the current state, as a snapshot, puts the client right at once.
            step, changed = hub.step, hub.store.snapshot(interest)
        else:
            since = hub.step if since is None else since
            changed = await hub.store.wait_for_change(since, interest, min(wait, LONG_POLL_MAX_WAIT_S))
            step = hub.step if changed else since
    finally:
        metrics.connection_closed("long_poll")
        slot.release()
    body = protocol.encode({"step": step, "quotes": changed, "feed": hub.feed, "session": hub.store.session})
    return HttpResponse(body, content_type="application/json", headers={"Cache-Control": "no-store"})


class _StreamOutlet:
    """An SSE connection's outlet (ticker/edge/server.py): frames go into a bounded queue the response drains."""

    def __init__(self, backpressure: server.StreamBackpressure):
        self.backpressure = backpressure
        self.queue: asyncio.Queue[server.Frame] = asyncio.Queue(SSE_MAX_QUEUED)
        self.overflowed = False

    @property
    def backlogged(self) -> bool:
        return self.backpressure.backlogged

    def write(self, frame: server.Frame) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed = True


def _sse(event: str, step: int, data: str) -> str:
    return f"id: {step}\nevent: {event}\ndata: {data}\n\n"


@read_only
async def stream(request: HttpRequest) -> HttpResponse:
    """GET /api/quotes/stream/?symbols=A,B&movers=N: Server-Sent Events, one event per market step.

    The first event is a ``snapshot``: every requested quote, or with a
    Last-Event-ID (the browser's automatic reconnect) just the quotes that
    changed after that step. Then one ``quotes`` event per step, ``id`` = step.
    With ``movers=N`` (1 to 20), ``movers`` events too: at once, then at most
    one a second while the market's top N gainers and losers change.
    """
    _refuse_foreign_origin(request)
    movers = _movers_param(request, "movers", least=0, default=0)
    last_id = _step_param(
        request.headers.get("Last-Event-ID", "").strip() or None,
        "bad_last_event_id",
        "Last-Event-ID must be a market step (a whole number).",
    )
    hub, interest = await _hub_and_interest(request)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":  # the stream's headers, without opening a stream that would never end
        return HttpResponse(content_type="text/event-stream", headers=headers)
    outlet = _StreamOutlet(server.StreamBackpressure(getattr(request, "scope", {})))
    # Admitted last, with no await until the response is returned: the stream's end gives the slot
    # back, and so does the response's close(), which Django calls even for a stream never started.
    slot = _admit(request, "sse")

    async def events():
        # Snapshot and attach happen here, inside the generator, in one step of
        # the event loop: a client that leaves before the stream starts never
        # leaves a connection behind, and the next event continues the snapshot.
        # A Last-Event-ID beyond the current step (from another database, or a reset market) gets everything:
        # "what changed since" would be nothing, and the client would keep prices this market never had.
        resume = last_id is not None and last_id <= hub.step
        quotes = hub.store.changed_since(last_id, interest) if resume else hub.store.snapshot(interest)
        first = _sse(
            "snapshot",
            hub.step,
            protocol.encode(protocol.snapshot_frame(quotes, step=hub.step, session=hub.store.session)),
        )
        hub.fanout.attach(outlet, interest)
        logs.connection_started("sse")
        metrics.connection_opened("sse")
        log.info("sse stream opened")
        # Everything after the attach is inside the try: one way out (issue 20), whatever ends the stream.
        try:
            if movers:
                hub.fanout.follow_movers(outlet, movers)  # its first movers event follows the snapshot
            yield "retry: 1000\n" + first
            # The hub's heartbeat events (every few seconds) keep proxies from
            # closing an idle stream and let the browser notice a dead one.
            while not outlet.overflowed:
                frame = await outlet.queue.get()
                yield _sse(frame.kind, frame.step, frame.text)
        finally:
            hub.fanout.detach(outlet)
            metrics.connection_closed("sse")
            log.info("sse stream closed")
            slot.release()

    return _EventStream(slot, events(), content_type="text/event-stream", headers=headers)


class _EventStream(StreamingHttpResponse):
    """An SSE response that gives its admission slot back when Django closes it (however the stream ended)."""

    def __init__(self, slot: admission.Slot, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slot = slot
        # And if a disconnect cancels the request between the view and close(), when the response goes.
        weakref.finalize(self, slot.release)

    def close(self) -> None:
        self.slot.release()
        super().close()


def _movers_param(request: HttpRequest, name: str, *, least: int, default: int) -> int:
    """How many gainers and losers (``?count=`` of GET /api/movers/, ``?movers=`` of SSE): ``least`` to MAX_MOVERS."""
    raw = request.GET.get(name)
    if raw is None:
        return default
    if not STEP.fullmatch(raw) or not least <= int(raw) <= protocol.MAX_MOVERS:
        raise ProtocolError("bad_count", f"{name} must be a whole number from {least} to {protocol.MAX_MOVERS}.")
    return int(raw)


@read_only
async def movers(request: HttpRequest) -> HttpResponse:
    """GET /api/movers/?count=N: the whole market's top gainers and losers from this process's hub, with an ETag."""
    count = _movers_param(request, "count", least=1, default=protocol.DEFAULT_MOVERS)
    try:
        hub = await get_hub()
    except FeedUnavailable as unavailable:
        raise protocol.unavailable(unavailable.retry_after_s) from None
    answer = hub.fanout.latest_movers().answer(count)
    del answer["type"]
    return _tagged(request, protocol.encode(answer).encode())


def poll(request: HttpRequest) -> HttpResponse:
    """GET /api/quotes/?symbols=A,B: the latest quotes from the database, with an ETag for cheap re-polls."""
    symbols = _symbols_param(request)
    listed = selectors.listed(None if symbols is None else filter(_could_be_listed, symbols))
    if symbols is not None and (unknown := sorted(set(symbols) - listed.symbols)):
        raise protocol.unknown_symbols(unknown)
    # step: the latest market step among the returned quotes, so a filtered
    # poll of quiet (e.g. halted) symbols keeps its ETag and gets 304s.
    body = protocol.encode({"step": listed.step, "quotes": listed.quotes(), "session": listed.session}).encode()
    return _tagged(request, body)


@read_only
def history(request: HttpRequest, symbol: str) -> HttpResponse:
    """GET /api/quotes/<symbol>/history/?limit=N: the last N one-minute closes, oldest first (the candles' closes).

    Kept for clients of the per-step history, which the market no longer
    stores (docs/protocol.md); new clients read /candles/.
    """
    symbol = symbol.upper()
    most = settings.MARKET_CANDLE_MINUTES  # everything the market keeps, and no more
    limit = _limit_param(request, default=min(HISTORY_DEFAULT, most), most=most)
    if not _could_be_listed(symbol) or not selectors.listed_stocks([symbol]).exists():
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
    if not _could_be_listed(symbol) or not selectors.listed_stocks([symbol]).exists():
        raise protocol.unknown_symbols([symbol], status=404)
    return JsonResponse({"symbol": symbol, "interval_s": 60, "candles": selectors.candles(symbol, limit=limit)})


@read_only
def sparklines(request: HttpRequest) -> HttpResponse:
    """GET /api/quotes/sparklines/?symbols=A,B: the last hour of one-minute closes of each symbol, in one answer."""
    symbols = _symbols_param(request)
    if symbols is None:
        raise ProtocolError("bad_symbols", "sparklines needs symbols: a comma-separated list such as AAPL,MSFT.")
    lines = selectors.sparklines([s for s in symbols if _could_be_listed(s)])
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
