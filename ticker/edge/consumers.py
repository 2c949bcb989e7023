"""WebSocket endpoint /ws/quotes/: thin: parse, call, send. Protocol: docs/protocol.md."""

from __future__ import annotations

import logging
import time
from functools import cached_property

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from ticker.edge import admission, security, server
from ticker.edge.ratelimit import TokenBucket
from ticker.edge.session import session_tag
from ticker.hub import FeedUnavailable, QuoteHub, get_hub
from ticker.hub.outlet import SocketOutlet
from ticker.ops import logs, metrics
from ticker.wire import protocol
from ticker.wire.frames import Frame
from ticker.wire.protocol import ALL, Command, ProtocolError

# The errors after which the server closes the socket, and its close code
# (RFC 6455 7.4.1: 1008 policy violation, 1009 message too big). Every other
# error frame leaves the connection open.
CLOSE_CODES = {"rate_limited": 1008, "too_large": 1009}
# RFC 6455 7.4.1 (IANA registry): the server cannot serve now; reconnect later.
TRY_AGAIN_LATER = 1013
# RFC 6455 7.4.1: the server hit an unexpected condition (daphne sends it when a handler raises).
INTERNAL_ERROR = 1011

log = logging.getLogger(__name__)


class QuoteConsumer(AsyncWebsocketConsumer):
    """One browser (or integrator) connection to the live feed.

    Batches do not arrive through this consumer's channel: the process's
    QuoteHub writes them to this connection's outlet (ticker/edge/server/), and
    so does this consumer, so every frame keeps its order.
    """

    # No channel of its own: batches come from the process's hub, so a socket
    # costs no Redis channel and no pending channel-layer receive. (Channels
    # gives a consumer no layer when its alias names no configured layer.)
    channel_layer_alias = None
    hub: QuoteHub | None = None
    outlet: SocketOutlet | None = None
    # Set once the socket is being closed by the server: client frames are ignored.
    closing: bool = False
    # Set once ``teardown`` has run: it runs once, whichever way the connection ended.
    torn_down: bool = False
    # The code the server closed with (None: the client closed, or the connection broke), and when it opened.
    closed_with: int | None = None
    opened_at: float | None = None
    # This connection's place in the process's connection cap (ticker/edge/admission.py), once admitted.
    slot: admission.Slot | None = None
    # Quotes frames as deltas (the client asked for protocol.DELTA_SUBPROTOCOL), or whole quotes.
    delta: bool = False
    # The signed-in user the session named at the handshake (AuthMiddlewareStack, config/asgi.py), or None.
    user_id: int | None = None
    username: str | None = None

    async def __call__(self, scope, receive, send) -> None:
        """The connection's whole life, and its one way out (``teardown``).

        A close from either side, a refused admission, an exception in a handler and daphne
        cancelling the application at shutdown (after the 1001 notice) all leave through here.
        Issue 20: a handler that raised used to skip ``disconnect``, so the fan-out kept feeding
        a connection that no longer existed and the gauges counted it forever.
        """
        try:
            await self._serve(scope, receive, send)
        except Exception:
            # daphne closes with 1011 once this application has returned: after the teardown below.
            self.closed_with = self.closed_with or INTERNAL_ERROR
            raise
        finally:
            self.teardown()

    async def _serve(self, scope, receive, send) -> None:
        """Channels' ``AsyncConsumer.__call__`` for a consumer with no channel layer, without its task per event.

        Channels waits for the next event through ``await_many_dispatch``: a task for each ``receive()`` and an
        ``asyncio.wait`` around it, built to wait on the client and a layer channel at once. With one source
        there is nothing to wait on together, and each idle connection held a task, its coroutine, a context
        and a waiter the whole time (about 1.3 KB of a connection's heap: ``bench_connmem``). Here the
        connection awaits ``receive()`` itself; the events and their order are Channels' own.
        """
        self.scope, self.channel_layer, self.base_send = scope, None, send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass  # Channels' way out of a consumer (websocket_disconnect raises it)

    async def dispatch(self, message: dict) -> None:
        """Called by Channels for every event of the connection (the connect, each client frame, the disconnect).

        Channels' own ``dispatch`` first hops to a worker thread to close stale database connections
        (``aclose_old_connections``) before every handler. This consumer runs no query of its own (the hub
        loads the stored market through ``database_sync_to_async``, which closes them around its call), so
        that hop was pure cost: about 60 us of a client message's 70 (docs/benchmarks.md, "Channels'
        dispatch").
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        """Called when a WebSocket connection is opened.

        Accepted before the hub is awaited: daphne drops a handshake that is
        not answered within 5 s, and a client is better told why (1013) than
        cut off. Client frames wait until this returns (Channels dispatches
        them in order).

        Past the process's connection cap the socket is accepted and closed at
        once with 1013 too, not refused with an HTTP 503: daphne turns a refusal
        before the accept into a 403, and a browser hides an upgrade's status
        anyway (a refused upgrade is close 1006 to the page, the same as a proxy
        that blocks WebSockets), while 1013 and its reason reach the page, which
        then waits and retries instead of leaving WebSocket for a worse transport.
        """
        # The delta format only for a client that asks for it (docs/protocol.md, "Quote formats").
        self.delta = protocol.DELTA_SUBPROTOCOL in self.scope.get("subprotocols", ())
        await self.accept(protocol.DELTA_SUBPROTOCOL if self.delta else None)
        logs.connection_started("ws")
        self.opened_at = time.monotonic()
        metrics.connection_opened("websocket")
        log.info("websocket opened", extra={"client": _peer(self.scope)})
        self.outlet = server.websocket_outlet(
            self.scope, self.base_send, compress_min_bytes=settings.TICKER_WS_COMPRESS_MIN_BYTES
        )
        metrics.websocket_negotiated(self.outlet.compression, self.delta)
        try:
            self.slot = admission.connections().admit(security.scope_client_address(self.scope))
        except admission.Full as full:  # the process's cap, or this address's share of it (issue 21)
            metrics.connection_refused("websocket", full.reason)
            self._close(TRY_AGAIN_LATER, full.close_reason)
            return
        try:
            self.hub = await get_hub()
        except FeedUnavailable as unavailable:
            self._close(TRY_AGAIN_LATER, f"try again in {unavailable.retry_after_s} s")
            return
        self.hub.fanout.attach(self.outlet, delta=self.delta)
        # Personal frames (docs/protocol.md, "Personal frames") for a signed-in user's socket only. The user was
        # read by AuthMiddleware before connect: no query here.
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            self.user_id, self.username = user.pk, user.get_username()
            self.hub.personal.attach(self.outlet, self.user_id, session_tag(self.scope.get("session")))

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes, whoever closed it."""
        self.teardown(code)

    def teardown(self, code: int | None = None) -> None:
        """Everything this connection holds, given back once whatever ended it (issue 20, "one way out").

        Detached from the fan-out (no more frames), its outlet stopped, its admission slot
        released, and the gauges and close counter updated. Safe to call again: the second
        call does nothing.
        """
        if self.torn_down:
            return
        self.torn_down = self.closing = True
        if self.hub is not None and self.outlet is not None:
            self.hub.fanout.detach(self.outlet)
            self.hub.personal.detach(self.outlet)
        if self.outlet is not None:
            self.outlet.stop()
        if self.slot is not None:
            self.slot, slot = None, self.slot
            slot.release()
        if self.opened_at is not None:
            metrics.connection_closed("websocket")
            closed = self.closed_with or code
            metrics.websocket_closed(closed)
            log.info(
                "websocket closed with %s", closed, extra={"code": closed, "seconds": time.monotonic() - self.opened_at}
            )
            self.opened_at = None

    @cached_property
    def rate_limit(self) -> TokenBucket:
        """This connection's message allowance, started full at its first message."""
        return TokenBucket(rate=settings.TICKER_WS_RATE, burst=settings.TICKER_WS_BURST, now=time.monotonic())

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called for every client frame; errors become one error frame.

        The socket stays open after an error, except when the client goes over
        the rate or size limit (CLOSE_CODES): then it gets that one error frame
        and the close, and frames it sent meanwhile are ignored.
        """
        if self.closing or self.hub is None:
            return
        await self.outlet.drained()
        try:
            # Counted before parsing: a flood of junk costs the server as much as valid messages.
            if not self.rate_limit.take(time.monotonic()):
                limit = self.rate_limit
                raise ProtocolError(
                    "rate_limited",
                    f"More than {limit.rate:g} messages a second (bursts of {limit.burst}): closing. "
                    "Reconnect and send less often; one subscribe can name many symbols.",
                )
            if bytes_data is not None and len(bytes_data) > protocol.MAX_MESSAGE_BYTES:
                raise ProtocolError("too_large", f"Messages are at most {protocol.MAX_MESSAGE_BYTES} bytes.")
            command = protocol.parse_client_message(text_data)
            getattr(self, f"on_{command.action}")(command)
        except ProtocolError as error:
            self._reply(error.frame())
            if error.code in CLOSE_CODES:
                metrics.message_refused(error.code)
                log.info("closing: %s", error.code)
                self._close(CLOSE_CODES[error.code])

    def _reply(self, frame: dict) -> None:
        text = protocol.encode(frame)
        self.hub.fanout.sent.add(frame["type"], len(text))
        self.outlet.write(Frame(text, self.hub.step, frame["type"]))

    def _close(self, code: int, reason: str = "") -> None:
        """The server closes the socket: no more frames from the hub while the close completes. What the
        connection holds is given back by ``teardown``, once the close has happened."""
        self.closing = True
        self.closed_with = code
        if self.hub is not None:
            self.hub.fanout.detach(self.outlet)
            self.hub.personal.detach(self.outlet)
        self.outlet.close(code, reason)

    def on_ping(self, command: Command) -> None:
        self._reply({"type": "pong", "ts": time.time_ns() // 1_000_000})

    def on_whoami(self, command: Command) -> None:
        """Who the server takes this socket for: the user its session named (the Lab shows it), or null once
        anonymous or signed out."""
        signed_in = self.hub.personal.owner(self.outlet) is not None
        self._reply({"type": "whoami", "user": self.username if signed_in else None})

    def on_movers(self, command: Command) -> None:
        self.hub.fanout.follow_movers(self.outlet, command.count)

    def on_subscribe(self, command: Command) -> None:
        known, unknown = self._split(command)
        if command.max_rate is not protocol.UNCHANGED:
            self.hub.fanout.set_max_rate(self.outlet, command.max_rate)
        if command.symbols == (ALL,) or known:
            self.hub.fanout.subscribe(self.outlet, None if command.symbols == (ALL,) else known)
        self._reject(unknown)

    def on_unsubscribe(self, command: Command) -> None:
        known, unknown = self._split(command)
        if command.symbols == (ALL,) or known:
            self.hub.fanout.unsubscribe(self.outlet, None if command.symbols == (ALL,) else known)
            self._reply({"type": "unsubscribed", "symbols": known or [ALL]})
        self._reject(unknown)

    def _split(self, command: Command) -> tuple[list[str], list[str]]:
        """Known and unknown symbols of a command; the known ones are acted on."""
        if command.symbols == (ALL,):
            return [], []
        known = [s for s in command.symbols if self.hub.store.known(s)]
        return known, [s for s in command.symbols if not self.hub.store.known(s)]

    @staticmethod
    def _reject(unknown: list[str]) -> None:
        if unknown:
            raise protocol.unknown_symbols(unknown)


def _peer(scope: dict) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
