"""The feed over plain HTTP: polling, long-polling and Server-Sent Events (with their outlet on the
hub's fan-out), and the market's movers. Every streaming answer holds a place in the process's
connection cap (ticker.edge.admission) until it ends."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.cache import get_conditional_response

from ticker.edge import admission, security, server
from ticker.edge.http import STEP, could_be_listed, read_only, symbols_param
from ticker.edge.session import session_tag
from ticker.hub import FeedUnavailable, Interest, QuoteHub, get_hub
from ticker.hub import interest as interests
from ticker.market import selectors
from ticker.ops import logs, metrics
from ticker.wire import protocol
from ticker.wire.frames import Frame
from ticker.wire.protocol import ProtocolError

log = logging.getLogger(__name__)
LONG_POLL_MAX_WAIT_S = 30.0
# A stream whose reader falls this many steps behind is closed; the browser
# reconnects with Last-Event-ID and catches up from a snapshot.
SSE_MAX_QUEUED = 64


def _tagged(request: HttpRequest, body: bytes) -> HttpResponse:
    """A JSON answer with a strong ETag of its body, or 304 when ``If-None-Match`` matches it.

    Django's conditional GET (RFC 9110 section 13.1.2): weak comparison, so a
    proxy's ``W/"..."`` matches, and ``*`` matches any current answer.
    """
    etag = f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
    response = HttpResponse(body, content_type="application/json", headers={"ETag": etag, "Cache-Control": "no-cache"})
    return get_conditional_response(request, etag=etag, response=response)


def _step_param(raw: str | None, code: str, message: str) -> int | None:
    """A market step a client sends back (``since``, ``Last-Event-ID``), or None when absent."""
    if raw is None:
        return None
    if not STEP.fullmatch(raw):
        raise ProtocolError(code, message)
    return int(raw)


def _refuse_foreign_origin(request: HttpRequest) -> None:
    """403 unless the request's Origin is absent, its own, or trusted: the WebSocket's rule (ticker.edge.security)."""
    if not security.origin_allowed(request.headers.get("Origin"), security.request_origin(request)):
        raise ProtocolError(
            "foreign_origin",
            "This origin may not read the feed: only pages of this site (same scheme, host and port) "
            "or of DJANGO_CSRF_TRUSTED_ORIGINS may.",
            status=403,
        )


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
    symbols = symbols_param(request)
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


async def _user_id(request: HttpRequest) -> int | None:
    """The signed-in user's id, read without blocking the loop (``auser``), or None (anonymous; or a request
    that went through no AuthenticationMiddleware, as a test's may)."""
    auser = getattr(request, "auser", None)
    if auser is None:
        return None
    user = await auser()
    return user.pk if user.is_authenticated else None


class _StreamOutlet:
    """An SSE connection's outlet (ticker.hub.outlet.Outlet): frames go into a bounded queue the response drains."""

    deflate = False  # SSE's text goes out as it is (HTTP compression is the proxy's business)

    def __init__(self, backpressure: server.StreamBackpressure):
        self.backpressure = backpressure
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(SSE_MAX_QUEUED)
        self.overflowed = False

    @property
    def backlogged(self) -> bool:
        return self.backpressure.backlogged

    def write(self, frame: Frame) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed = True

    def write_all(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.write(frame)


def _sse(event: str, step: int, data: str) -> str:
    return f"id: {step}\nevent: {event}\ndata: {data}\n\n"


@read_only
async def stream(request: HttpRequest) -> HttpResponse:
    """GET /api/quotes/stream/?symbols=A,B&movers=N: Server-Sent Events, one event per market step.

    The first event is a ``snapshot``: every requested quote, or with a
    Last-Event-ID (the browser's automatic reconnect) just the quotes that
    changed after that step. Then one ``quotes`` event per step, ``id`` = step.
    With ``movers=N`` (1 to 20), ``movers`` events too: at once, then at most
    one a second while the market's top N gainers and losers change. A signed-in user's stream also
    carries their personal events: ``alert``, ``watchlist`` and ``signed_out`` (docs/protocol.md).
    """
    _refuse_foreign_origin(request)
    movers = _movers_param(request, "movers", least=0, default=0)
    last_id = _step_param(
        request.headers.get("Last-Event-ID", "").strip() or None,
        "bad_last_event_id",
        "Last-Event-ID must be a market step (a whole number).",
    )
    hub, interest = await _hub_and_interest(request)
    user_id = await _user_id(request)
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
        # Alert, watchlist and signed_out events for a signed-in user (the session read by auser() already).
        hub.personal.attach(outlet, user_id, session_tag(getattr(request, "session", None)) if user_id else None)
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
            hub.personal.detach(outlet)
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
    symbols = symbols_param(request)
    listed = selectors.listed(None if symbols is None else filter(could_be_listed, symbols))
    if symbols is not None and (unknown := sorted(set(symbols) - listed.symbols)):
        raise protocol.unknown_symbols(unknown)
    # step: the latest market step among the returned quotes, so a filtered
    # poll of quiet (e.g. halted) symbols keeps its ETag and gets 304s.
    body = protocol.encode({"step": listed.step, "quotes": listed.quotes(), "session": listed.session}).encode()
    return _tagged(request, body)
