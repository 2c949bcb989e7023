"""WebSocket endpoint /ws/quotes/: thin: parse, call, send. Protocol: docs/protocol.md."""

from __future__ import annotations

import time
from functools import cached_property

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import daphne_support, protocol
from .hub import QuoteHub, RateCap, get_hub
from .protocol import ALL, Command, ProtocolError
from .ratelimit import TokenBucket

# The errors after which the server closes the socket, and its close code
# (RFC 6455 7.4.1: 1008 policy violation, 1009 message too big). Every other
# error frame leaves the connection open.
CLOSE_CODES = {"rate_limited": 1008, "too_large": 1009}


class QuoteConsumer(AsyncWebsocketConsumer):
    """One browser (or integrator) connection to the live feed.

    Batches do not arrive through this consumer's channel: the process's
    QuoteHub calls ``send_frame`` directly (see ticker/hub.py for why).
    """

    # No channel of its own: batches come from the process's hub, so a socket
    # costs no Redis channel and no pending channel-layer receive. (Channels
    # gives a consumer no layer when its alias names no configured layer.)
    channel_layer_alias = None
    hub: QuoteHub
    # None means every symbol; an empty set means nothing yet.
    subscription: frozenset[str] | None = frozenset()

    # The Twisted transport under this socket (daphne only): see ticker/daphne_support.py.
    transport = None
    wire: daphne_support.Wire | None = None  # the broadcast path to the socket (daphne only)
    behind = False
    cap: RateCap | None = None  # the client's max_rate

    async def connect(self) -> None:
        """Called when a WebSocket connection is opened."""
        self.hub = await get_hub()
        await self.accept()
        self.transport = daphne_support.connection_transport(self.scope)
        daphne_support.limit_buffers(self.transport)
        self.wire = daphne_support.Wire.of(self.transport)
        self.hub.attach(self)

    @property
    def backlogged(self) -> bool:
        """The client is not reading and its buffers are full: the hub holds frames back."""
        return daphne_support.backlogged(self.transport)

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes, whoever closed it."""
        if hasattr(self, "hub"):
            self.hub.detach(self)

    # Set once the client broke a limit and the socket is being closed.
    limit_exceeded: bool = False

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
        if self.limit_exceeded:
            return
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
            await getattr(self, f"on_{command.action}")(command)
        except ProtocolError as error:
            await self.send_frame(protocol.encode(error.frame()))
            if error.code in CLOSE_CODES:
                await self._close_for(CLOSE_CODES[error.code])

    async def _close_for(self, code: int) -> None:
        """Close the socket after a broken limit; it gets no more quotes while the close completes."""
        self.limit_exceeded = True
        # Detached first: the hub must not send into a socket that is closing
        # (daphne refuses sends once the close frame is out).
        self.hub.detach(self)
        # autobahn, under daphne, lets an ASGI close carry only 1000 or
        # 3000-4999 (django/daphne#374); daphne_support sends the RFC code.
        if daphne_support.close_websocket(self.transport, code):
            return
        try:
            await self.close(code=code)
        except Exception:  # daphne without a transport found: autobahn refuses RFC codes from an app
            await self.close(code=4000 + code % 1000)

    async def send_frame(self, text: str, step: int = 0, event: str = "quotes") -> None:
        await self.send(text_data=text)

    async def on_ping(self, command: Command) -> None:
        await self.send_frame(protocol.encode({"type": "pong", "ts": time.time_ns() // 1_000_000}))

    async def on_subscribe(self, command: Command) -> None:
        known, unknown = self._split(command)
        if command.symbols == (ALL,):
            added: frozenset[str] | None = None
            self.subscription = None
        else:
            added = frozenset(known)
            if self.subscription is not None:
                self.subscription = self.subscription | added
        if command.max_rate is not protocol.UNCHANGED:
            await self._set_max_rate(command.max_rate)
        if self.cap is not None:
            self.cap.forget(added)  # the snapshot below is newer
        # Snapshot and subscription change in the same step of the event
        # loop, so the next batch continues exactly where the snapshot ends.
        snapshot = protocol.snapshot_frame(self.hub.snapshot(added), step=self.hub.step)
        if added is None or added:
            await self.send_frame(protocol.encode(snapshot))
        self._reject(unknown)

    async def _set_max_rate(self, max_rate: float | None) -> None:
        """A new cap keeps what the old one held; lifting the cap sends it at once."""
        old, self.cap = self.cap, None if max_rate is None else RateCap(max_rate)
        if old is None:
            return
        old.cancel()
        if self.cap is not None:
            self.cap.pending, self.cap.merged = old.pending, old.merged
        elif (text := old.take(self.subscription, self.hub.step, 0.0)) is not None:
            await self.send_frame(text)

    async def on_unsubscribe(self, command: Command) -> None:
        known, unknown = self._split(command)
        if command.symbols == (ALL,):
            self.subscription = frozenset()
        elif known:
            current = frozenset(self.hub.latest) if self.subscription is None else self.subscription
            self.subscription = current - set(known)
        if command.symbols == (ALL,) or known:
            await self.send_frame(protocol.encode({"type": "unsubscribed", "symbols": list(known) or [ALL]}))
        self._reject(unknown)

    def _split(self, command: Command) -> tuple[list[str], list[str]]:
        """Known and unknown symbols of a command; the known ones are acted on."""
        if command.symbols == (ALL,):
            return [], []
        known = [s for s in command.symbols if self.hub.known(s)]
        return known, [s for s in command.symbols if not self.hub.known(s)]

    @staticmethod
    def _reject(unknown: list[str]) -> None:
        if unknown:
            raise ProtocolError("unknown_symbol", f"Unknown symbol(s): {', '.join(unknown)}.", symbols=unknown)
