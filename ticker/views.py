"""HTTP views: the dashboard, polling, long-polling and Server-Sent Events. Thin: parse, read, render."""

from __future__ import annotations

import asyncio
import hashlib
import re
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.request import validate_host
from django.shortcuts import render
from django.utils.http import parse_etags
from django.views.decorators.http import require_GET

from . import daphne_support, handshake, protocol, selectors
from .hub import get_hub
from .models import symbol_validator
from .protocol import ProtocolError

HISTORY_DEFAULT, HISTORY_MAX = 240, 2400
LONG_POLL_MAX_WAIT_S = 30.0
# A stream whose reader falls this many steps behind is closed; the browser
# reconnects with Last-Event-ID and catches up from a snapshot.
SSE_MAX_QUEUED = 64
# A market step as a client sends it back (since=, Last-Event-ID): ASCII digits
# only, as str.isdigit() also takes "²", which int() refuses; and short enough
# for int(), which refuses strings of more than 4300 digits.
STEP = re.compile(r"[0-9]{1,19}")


def error(status: int, code: str, message: str, **extra) -> JsonResponse:
    return JsonResponse({"type": "error", "code": code, "message": message, **extra}, status=status)


def refused(problem: ProtocolError) -> JsonResponse:
    """A bad request parameter, as a 400 in the same shape as the WebSocket's error frames."""
    return error(400, problem.code, problem.message, **problem.extra)


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


def _could_be_listed(symbol: str) -> bool:
    """Only strings shaped like a symbol reach the database (PostgreSQL refuses NUL in a query, a 500)."""
    return symbol_validator.regex.fullmatch(symbol) is not None


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


def _foreign_origin(request: HttpRequest) -> bool:
    """True when the request names an Origin outside ALLOWED_HOSTS (same rule as the WebSocket)."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    host = urlsplit(origin).hostname
    return not host or not validate_host(host, settings.ALLOWED_HOSTS)


async def _hub_symbols(request: HttpRequest):
    """(hub, symbols or None, error response or None) for the streaming and long-poll endpoints."""
    try:
        symbols = _symbols_param(request)
    except ProtocolError as problem:
        return None, None, refused(problem)
    hub = await get_hub()
    if symbols is not None:
        unknown = [s for s in symbols if not hub.known(s)]
        if unknown:
            return (
                None,
                None,
                error(400, "unknown_symbol", f"Unknown symbol(s): {', '.join(unknown)}.", symbols=unknown),
            )
        return hub, frozenset(symbols), None
    return hub, None, None


@require_GET
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
    if _foreign_origin(request):
        return error(403, "foreign_origin", "This origin may not read the feed.")
    try:
        wait = float(request.GET.get("wait", "0"))
        if not wait >= 0:  # also refuses NaN
            raise ValueError
    except ValueError:
        return error(400, "bad_wait", f"wait must be a number of seconds from 0 to {LONG_POLL_MAX_WAIT_S:g}.")
    since_raw = request.GET.get("since")
    if since_raw is not None and not STEP.fullmatch(since_raw):
        return error(400, "bad_since", "since must be a market step: a whole number from 0.")
    hub, symbols, problem = await _hub_symbols(request)
    if problem:
        return problem
    since = hub.step if since_raw is None else int(since_raw)
    changed = await hub.wait_for_change(since, symbols, min(wait, LONG_POLL_MAX_WAIT_S))
    body = protocol.encode({"step": hub.step if changed else since, "quotes": changed, "feed": hub.feed})
    return HttpResponse(body, content_type="application/json", headers={"Cache-Control": "no-store"})


class _StreamSubscriber:
    """An SSE connection as the hub sees it: frames go into a bounded queue."""

    behind = False
    cap = None  # SSE has no max_rate
    wire = None  # events go through send_frame

    def __init__(self, subscription: frozenset[str] | None, transport=None):
        self.subscription = subscription
        self.transport = transport
        self.queue: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue(SSE_MAX_QUEUED)
        self.overflowed = False

    @property
    def backlogged(self) -> bool:
        return daphne_support.backlogged(self.transport)

    async def send_frame(self, text: str, step: int, event: str = "quotes") -> None:
        try:
            self.queue.put_nowait((step, text, event))
        except asyncio.QueueFull:
            self.overflowed = True


def _sse(event: str, step: int, data: str) -> str:
    return f"id: {step}\nevent: {event}\ndata: {data}\n\n"


@require_GET
async def stream(request: HttpRequest) -> HttpResponse:
    """GET /api/quotes/stream/?symbols=A,B: Server-Sent Events, one event per market step.

    The first event is a ``snapshot``: every requested quote, or with a
    Last-Event-ID (the browser's automatic reconnect) just the quotes that
    changed after that step. Then one ``quotes`` event per step, ``id`` = step.
    """
    if _foreign_origin(request):
        return error(403, "foreign_origin", "This origin may not read the feed.")
    last_id = request.headers.get("Last-Event-ID", "").strip()
    if last_id and not STEP.fullmatch(last_id):
        return error(400, "bad_last_event_id", "Last-Event-ID must be a market step (a whole number).")
    hub, symbols, problem = await _hub_symbols(request)
    if problem:
        return problem
    transport = daphne_support.connection_transport(getattr(request, "scope", {}))
    daphne_support.limit_buffers(transport)
    subscriber = _StreamSubscriber(symbols, transport)

    async def events():
        # Snapshot and attach happen here, inside the generator, in one step of
        # the event loop: a client that leaves before the stream starts never
        # leaves a subscriber behind, and the next event continues the snapshot.
        quotes = hub.changed_since(int(last_id), symbols) if last_id else hub.snapshot(symbols)
        first = _sse("snapshot", hub.step, protocol.encode(protocol.snapshot_frame(quotes, step=hub.step)))
        hub.attach(subscriber)
        try:
            yield "retry: 1000\n" + first
            # The hub's heartbeat events (every few seconds) keep proxies from
            # closing an idle stream and let the browser notice a dead one.
            while not subscriber.overflowed:
                step, text, event = await subscriber.queue.get()
                yield _sse(event, step, text)
        finally:
            hub.detach(subscriber)

    return StreamingHttpResponse(
        events(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def poll(request: HttpRequest) -> HttpResponse:
    """GET /api/quotes/?symbols=A,B: the latest quotes from the database, with an ETag for cheap re-polls."""
    try:
        symbols = _symbols_param(request)
    except ProtocolError as problem:
        return refused(problem)
    stocks = list(selectors.listed_stocks(None if symbols is None else filter(_could_be_listed, symbols)))
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
    if not _could_be_listed(symbol) or not selectors.listed_stocks([symbol]).exists():
        return error(404, "unknown_symbol", f"Unknown symbol: {symbol}.", symbols=[symbol])
    return JsonResponse({"symbol": symbol, "points": selectors.history(symbol, limit=limit)})


@require_GET
def lab(request: HttpRequest) -> HttpResponse:
    """The Lab: the four transports side by side in the browser, measured."""
    stocks = list(selectors.listed_stocks())
    transports = [
        ("websocket", "WebSocket"),
        ("sse", "Server-Sent Events"),
        ("longpoll", "Long-polling"),
        ("polling", "Polling (1 s)"),
    ]
    return render(request, "ticker/lab.html", {"symbols": [s.symbol for s in stocks], "transports": transports})


@require_GET
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
        return error(502, "handshake_failed", f"Could not open a WebSocket to this server: {exc}.")
    return JsonResponse(captured)
