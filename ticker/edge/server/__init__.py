"""The one package that knows the ASGI server: what a connection needs from it, on daphne and elsewhere.

A connection (a WebSocket consumer, an SSE stream) asks this package for an
**outlet**: something it, and the hub, can hand frames to without awaiting
anything. What an outlet offers is ticker/hub/outlet.py (``Outlet`` for the
hub: ``write``, ``backlogged``, ``deflate``; ``SocketOutlet`` for the
consumer: ``close(code)`` with any RFC 6455 code, ``stop()``, ``drained()``,
``compression``).

**On daphne** (verified against daphne 4.2.3, autobahn 26.10.2 and Twisted
26.10.0, the versions pinned in requirements.txt) a WebSocket's outlet is its
Twisted transport, found through daphne's ``HTTPFactory.server`` and
``Server.connections`` (``transports``: the server object found once). Each frame is framed once, by
``text_frame`` (ticker/wire/frames.py, the RFC 6455 header built by hand: no library call, so a frame made
for one client costs as little to frame as one shared by thousands; checked against
autobahn's own framing on the first connection), and written straight to the
socket when nothing is queued for it, as asyncio's own transports do; the
rest goes to Twisted's buffer, which keeps order and connection-loss handling. Through
ASGI, every frame to every client cost a trip through Channels' and daphne's
send layers, a framing, and a deferred Twisted write with two epoll_ctl calls
per frame: most of daphne's busy time at 2,000 clients (docs/benchmarks.md,
"Fan-out at scale"). That direct write reads private attributes of Twisted's
and autobahn's (``_tempDataLen``, ``offset``, ``dataBuffer``,
``_perMessageCompress``, ``send_queue``, and daphne's ``Server.ws_factory``); ``outlet.fast_path_missing`` checks them,
and that ``text_frame`` still frames as autobahn does, on the first connection
and, if anything is off, logs once and uses autobahn's public
``sendPreparedMessage`` instead (still framed once, written through Twisted).
Backpressure: each transport's kernel send buffer is capped and Twisted flags
``producerPaused`` once its own buffer passes ``bufferSize``.

**Compression** (permessage-deflate, RFC 7692; docs/protocol.md, "Compression"): daphne declines every offer,
so ``install`` gives daphne's WebSocket factory an accept function once the reactor runs (``compression``). It
answers ``server_no_context_takeover`` whether or not the client asked (RFC 7692 7.1.1.1), so every message is
compressed on its own and one compressed frame (``Frame.deflated``, made by ``deflated_frame``) goes to every
connection that negotiated it, as the plain frame does. autobahn's ``sendPreparedMessage`` would compress per
connection instead ("cannot compress/frame in advance"), so the direct write sends our own frame with RSV1
set; ``fast_path_missing`` checks that autobahn's own decompressor reads it back. Frames below
``TICKER_WS_COMPRESS_MIN_BYTES``, and frames made for one connection past the fan-out's per-step budget
(``Frame(compress=False)``: thousands of personal watchlists would cost a compressor per client per step,
ticker/hub/batch.py), go uncompressed with RSV1 clear, which RFC 7692 allows message by message.

daphne and autobahn let an application's ``websocket.close`` carry only 1000
or 3000-4999 (django/daphne#374), so ``close`` sends the RFC code through
autobahn's frame API. On SIGTERM daphne cancels every application and cuts
the sockets (browsers see 1006); ``install`` registers a trigger that first
sends 1001 ("going away") on every open WebSocket and gives clients a moment.

**Abuse by one client** (issue 21; ``guards.install_guards``): daphne's WebSocket factory gets our protocol, which
counts every client frame as its header is read (``ticker.edge.ratelimit.FrameGuard``: a frame budget, 64 fragments
a message, 16 KiB before the message completes) and, past a limit, sends one error frame and the close (1008, or
1009 for size) and parses nothing more of what the client sent; and daphne's HTTP factory gets a Twisted channel
that closes a connection whose request (line, headers and any body) is not complete within ``TICKER_HEADER_TIMEOUT_S``.
Both hook autobahn's and Twisted's parsers, which neither promises: ``guards_missing`` checks what they use at
start-up and, if anything is gone, logs an ERROR and leaves daphne unguarded.

**On any other ASGI server** (uvicorn, hypercorn) and for daphne's TLS
endpoint, an outlet is a bounded queue drained by its own task through ASGI
``send``: a client that stops reading blocks only its own task (its queue
fills, it is backlogged) and never the hub or another client.

The package, by job: ``transports`` finds daphne's server object (once) and a connection's Twisted transport;
``outlet`` is the daphne outlet and the SSE stream's backpressure; ``compression`` answers permessage-deflate
offers; ``guards`` holds the per-frame limits and the header deadline (and lets an upgraded connection's HTTP
channel go); ``inputs`` gives each connection a lean input queue in place of daphne's ``asyncio.Queue`` and ``options``
keeps autobahn's protocol options on the class rather than in each connection (issue 24: memory per
connection); this module installs them and sends the shutdown notice. The frames themselves
(``Frame``, ``text_frame``, ``deflate``) are ticker/wire/frames.py, the generic outlet ticker/edge/queued.py, and
what an outlet must offer ticker/hub/outlet.py. Only this package
imports daphne, autobahn or Twisted.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging

from ticker.edge.queued import QueuedOutlet
from ticker.edge.server.compression import enable_compression
from ticker.edge.server.guards import guards_missing, install_guards
from ticker.edge.server.inputs import lean_inputs
from ticker.edge.server.options import share_protocol_options
from ticker.edge.server.outlet import DaphneOutlet, StreamBackpressure, websocket_outlet
from ticker.edge.server.transports import servers, under_daphne
from ticker.wire.frames import Frame

__all__ = [
    "DaphneOutlet",
    "Frame",
    "QueuedOutlet",
    "StreamBackpressure",
    "close_websockets",
    "guards_missing",
    "install",
    "under_daphne",
    "websocket_outlet",
]

log = logging.getLogger(__name__)

VERIFIED_WITH = {"daphne": "4.2.3", "autobahn": "26.10.2", "Twisted": "26.10.0"}
GOING_AWAY = 1001
GRACE_S = 1.0
_installed = False


def install() -> None:
    """Register the shutdown notice with daphne's reactor, and say if the versions differ from the verified ones."""
    global _installed
    if _installed or not under_daphne():
        return
    from django.conf import settings
    from twisted.internet import reactor

    for package, verified in VERIFIED_WITH.items():
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            if (found := importlib.metadata.version(package)) != verified:
                log.warning("%s %s is installed; ticker.edge.server was verified with %s", package, found, verified)
    reactor.addSystemEventTrigger("before", "shutdown", close_websockets)
    # daphne makes its factories when it starts to listen, after importing the application: give them our
    # protocols (per-frame limits, the header deadline) once the reactor runs, before it accepts a connection;
    # daphne's server object is found then, once (``transports.servers``), not for every connection.
    reactor.callWhenRunning(install_guards, settings)
    reactor.callWhenRunning(lambda: lean_inputs(servers()))  # each connection's input queue (``inputs``)
    if settings.TICKER_WS_COMPRESSION:
        # daphne makes its WebSocket factory when it starts to listen, after importing the application.
        reactor.callWhenRunning(enable_compression)
    # Last: once daphne and the site have set every protocol option on the factory (``options``).
    reactor.callWhenRunning(share_protocol_options)
    _installed = True


def close_websockets():
    """Send 1001 on every open WebSocket; the Deferred fires once all closed, or after GRACE_S."""
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet import reactor, task

    sockets = [
        protocol
        for server in servers()
        for protocol in list(server.connections)
        if isinstance(protocol, WebSocketProtocol) and protocol.state == protocol.STATE_OPEN
    ]
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
