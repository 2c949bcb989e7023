"""What the app needs from daphne that ASGI does not offer: a clean shutdown, write backpressure, a cheap broadcast.

Both rely on daphne's HTTPFactory.server and Server.connections and on the
Twisted transports under them (daphne and Twisted are pinned; the tests run
the real thing: tests/test_reliability.py). Outside daphne every function
here does nothing, and the app still works, without these two guarantees.

**Going away.** On SIGTERM, daphne's WebSocket clients get a 1001 close frame, not a dropped
connection. daphne stops its Twisted reactor on SIGTERM and cancels every application;
the sockets are then simply cut, and browsers see close code 1006 (abnormal).
An application cannot send 1001 itself: autobahn, under daphne, lets an ASGI
``websocket.close`` carry only 1000 or 3000-4999 (django/daphne#374). So a
shutdown trigger, registered before daphne registers its own, sends 1001
("going away", RFC 6455 7.4.1) on every open WebSocket through autobahn's
frame API and gives clients a moment to answer before the reactor stops.
The same restriction is why ``close_websocket`` exists: the rate and size
limits close with 1008 and 1009, as RFC 6455 names them.

**Slow readers.** ASGI's ``send`` never waits under daphne: a client that
stops reading makes Twisted buffer every frame for it, without bound. Each
connection's transport is found by its peer address; its kernel send buffer
is capped, and once Twisted's own buffer for it passes ``bufferSize`` the
transport flags ``producerPaused``. The hub then stops sending to that
client and, once the buffers have drained, sends it one snapshot of the
latest prices (conflation) instead of the frames it missed.

**Broadcast.** Through ASGI, every frame to every client costs a trip
through Channels' and daphne's send layers, a WebSocket framing, and a
buffered Twisted write that registers the socket with the event loop and
sends on the loop's next turn (two epoll_ctl calls and a namedtuple copy in
asyncio's selector per frame). A py-spy profile at 2,000 clients found most
of daphne's busy time there (docs/benchmarks.md, "Fan-out at scale"). ``Wire`` sends a frame
framed once per step (autobahn's PreparedMessage, made for broadcast)
straight to the socket when nothing is queued for it, as asyncio's own
transports do, and leaves the rest to Twisted's buffer, which keeps the
order, the backpressure above and the connection-loss handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

GOING_AWAY = 1001
# Per connection: at most this much queued in Twisted before the hub holds
# frames back, and this kernel send buffer (Linux doubles it), so a stalled
# client has at most ~100 KiB (about 30 frames of all symbols) in flight.
WRITE_BUFFER_BYTES = 16 * 1024
KERNEL_SEND_BUFFER_BYTES = 32 * 1024
GRACE_S = 1.0
_installed = False


def install() -> None:
    """Register the shutdown trigger with daphne's reactor; does nothing outside daphne."""
    global _installed
    if _installed or "daphne.server" not in sys.modules:
        return
    from twisted.internet import reactor

    reactor.addSystemEventTrigger("before", "shutdown", close_websockets)
    _installed = True


def _servers() -> set:
    from twisted.internet import reactor

    found = {getattr(getattr(reader, "factory", None), "server", None) for reader in reactor.getReaders()}
    return {server for server in found if hasattr(server, "connections")}


def _open_websockets() -> list:
    from daphne.ws_protocol import WebSocketProtocol

    return [
        protocol
        for server in _servers()
        for protocol in list(server.connections)
        if isinstance(protocol, WebSocketProtocol) and protocol.state == protocol.STATE_OPEN
    ]


def connection_transport(scope: dict):
    """The Twisted transport carrying this ASGI connection, or None outside daphne.

    A WebSocket consumer runs in the task daphne created for it, so that task
    identifies its connection; an HTTP view runs in a task of Django's, so it
    is matched by peer address (which ``--proxy-headers`` would replace: then
    nothing is found and the stream simply has no backpressure).
    """
    if "daphne.server" not in sys.modules:
        return None
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    client = scope.get("client")
    host, port = (client[0], int(client[1])) if client else (None, None)
    for server in _servers():
        # Newest first: the connection asking is one of the last to arrive.
        for protocol in reversed(server.connections):
            transport = getattr(protocol, "transport", None)
            if transport is None:
                continue
            if task is not None and server.connections[protocol].get("application_instance") is task:
                return transport
            peer = transport.getPeer()
            if port is not None and getattr(peer, "port", None) == port and getattr(peer, "host", None) == host:
                return transport
    return None


def limit_buffers(transport) -> None:
    """Cap what a stalled client can have queued for it (see the module docstring)."""
    if transport is None:
        return
    transport.bufferSize = WRITE_BUFFER_BYTES
    with contextlib.suppress(OSError, AttributeError):
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER_BYTES)


def close_websocket(transport, code: int) -> bool:
    """Close a daphne WebSocket with any RFC 6455 code (1008, 1009, ...); False when not under daphne."""
    protocol = getattr(transport, "protocol", None)
    if protocol is None or "daphne.ws_protocol" not in sys.modules:
        return False
    from daphne.ws_protocol import WebSocketProtocol

    if not isinstance(protocol, WebSocketProtocol):
        return False
    if protocol.state == protocol.STATE_OPEN:
        protocol.sendCloseFrame(code=code, isReply=False)
    return True


def prepare(text: str):
    """One text frame, framed once, for any number of ``Wire.write`` calls."""
    from autobahn.websocket.protocol import PreparedMessage

    return PreparedMessage(text.encode(), isBinary=False, applyMask=False, doNotCompress=False)


class Wire:
    """The broadcast path to one daphne WebSocket (see the module docstring)."""

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol, transport):
        self.protocol, self.transport = protocol, transport

    @classmethod
    def of(cls, transport) -> Wire | None:
        """The wire of a daphne WebSocket's plain TCP transport; None elsewhere (the caller uses ASGI send)."""
        protocol = getattr(transport, "protocol", None)
        if protocol is None or "daphne.ws_protocol" not in sys.modules:
            return None
        from daphne.ws_protocol import WebSocketProtocol

        # Plain TCP only: on daphne's ssl: endpoint the transport's protocol is
        # Twisted's TLSMemoryBIOProtocol, not daphne's, and the frames must be
        # encrypted, so such a socket keeps the ASGI path.
        return cls(protocol, transport) if isinstance(protocol, WebSocketProtocol) else None

    def write(self, prepared) -> None:
        """Send a prepared frame, or drop it once the WebSocket is closing (as daphne's own send does)."""
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return
        if protocol._perMessageCompress is not None or protocol.send_queue:
            protocol.sendPreparedMessage(prepared)  # compressed per connection, or behind autobahn's own queue
            return
        data, transport = prepared.payloadHybi, self.transport
        # Twisted's write only buffers, and sends on a later turn of the loop;
        # when nothing is queued the socket can take the frame right now.
        if transport.connected and not transport._tempDataLen and transport.offset == len(transport.dataBuffer):
            try:
                sent = transport.socket.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # a broken connection: Twisted's own write finds out and closes it
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)


def backlogged(transport) -> bool:
    """True while Twisted holds more than bufferSize bytes for this client (it is not reading)."""
    return transport is not None and transport.producerPaused


def close_websockets():
    """Send 1001 on every open WebSocket; the Deferred fires once all closed, or after GRACE_S."""
    from twisted.internet import reactor, task

    sockets = _open_websockets()
    for protocol in sockets:
        protocol.sendCloseFrame(code=GOING_AWAY, reasonUtf8=b"server shutting down", isReply=False)
    if not sockets:
        return None
    deadline = reactor.seconds() + GRACE_S

    def check():
        if reactor.seconds() >= deadline or all(p.state == p.STATE_CLOSED for p in sockets):
            loop.stop()

    loop = task.LoopingCall(check)
    return loop.start(0.05)
