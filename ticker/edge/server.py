"""The one module that knows the ASGI server: what a connection needs from it, on daphne and elsewhere.

A connection (a WebSocket consumer, an SSE stream) asks this module for an
**outlet**: something it, and the hub, can hand frames to without awaiting
anything. An outlet gives

- ``write(frame)``: send a frame; the frame carries its text and, once the
  first outlet has framed it, its server-specific encoding, so a frame that
  goes to thousands of connections is framed once (``Frame.prepared``);
- ``backlogged``: True while the client is not reading and what is queued
  for it has reached its bound; the hub then sends it nothing more and,
  once it reads again, one snapshot instead of the frames it missed;
- ``close(code)``: close with any RFC 6455 code (1008, 1009, 1013, ...);
- ``stop()``: forget the connection (called once it has gone).

**On daphne** (verified against daphne 4.2.3, autobahn 26.10.2 and Twisted
26.10.0, the versions pinned in requirements.txt) a WebSocket's outlet is its
Twisted transport, found through daphne's ``HTTPFactory.server`` and
``Server.connections``. Each frame is framed once, by ``text_frame`` (the
RFC 6455 header built here: no library call, so a frame made for one client
costs as little to frame as one shared by thousands; checked against
autobahn's own framing on the first connection), and written straight to the
socket when nothing is queued for it, as asyncio's own transports do; the
rest goes to Twisted's buffer, which keeps order and connection-loss handling. Through
ASGI, every frame to every client cost a trip through Channels' and daphne's
send layers, a framing, and a deferred Twisted write with two epoll_ctl calls
per frame: most of daphne's busy time at 2,000 clients (docs/benchmarks.md,
"Fan-out at scale"). That direct write reads private attributes of Twisted's
and autobahn's (``_tempDataLen``, ``offset``, ``dataBuffer``,
``_perMessageCompress``, ``send_queue``, and daphne's ``Server.ws_factory``); ``fast_path_missing`` checks them,
and that ``text_frame`` still frames as autobahn does, on the first connection
and, if anything is off, logs once and uses autobahn's public
``sendPreparedMessage`` instead (still framed once, written through Twisted).
Backpressure: each transport's kernel send buffer is capped and Twisted flags
``producerPaused`` once its own buffer passes ``bufferSize``.

**Compression** (permessage-deflate, RFC 7692; docs/protocol.md, "Compression"): daphne declines every
offer, so ``install`` gives daphne's WebSocket factory an accept function once the reactor runs. It answers
``server_no_context_takeover`` whether or not the client asked (RFC 7692 7.1.1.1), so every message is
compressed on its own and one compressed frame (``Frame.deflated``, made by ``deflated_frame``) goes to every
connection that negotiated it, as the plain frame does. autobahn's ``sendPreparedMessage`` would compress
per connection instead ("cannot compress/frame in advance"), so the direct write sends our own frame with
RSV1 set; ``fast_path_missing`` checks that autobahn's own decompressor reads it back. Frames below
``TICKER_WS_COMPRESS_MIN_BYTES``, and frames made for one connection past the fan-out's per-step budget
(``Frame(compress=False)``: thousands of personal watchlists would cost a compressor per client per step,
ticker/hub/fanout.py), go uncompressed with RSV1 clear, which RFC 7692 allows message by message.

daphne and autobahn let an application's ``websocket.close`` carry only 1000
or 3000-4999 (django/daphne#374), so ``close`` sends the RFC code through
autobahn's frame API. On SIGTERM daphne cancels every application and cuts
the sockets (browsers see 1006); ``install`` registers a trigger that first
sends 1001 ("going away") on every open WebSocket and gives clients a moment.

**Abuse by one client** (issue 21; ``install_guards``): daphne's WebSocket factory gets our protocol, which
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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
import socket
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ticker.edge.ratelimit import RATE_LIMITED, TOO_FRAGMENTED, TOO_LARGE, FrameGuard
from ticker.ops import logs, metrics
from ticker.wire.protocol import MAX_MESSAGE_BYTES, MAX_MESSAGE_FRAGMENTS, ProtocolError, encode

log = logging.getLogger(__name__)

VERIFIED_WITH = {"daphne": "4.2.3", "autobahn": "26.10.2", "Twisted": "26.10.0"}
GOING_AWAY = 1001
# Per daphne connection: at most this much queued in Twisted before the
# connection counts as backlogged, and this kernel send buffer (Linux doubles
# it), so a stalled client has at most ~100 KiB (about 30 frames of all
# symbols) in flight.
WRITE_BUFFER_BYTES = 16 * 1024
KERNEL_SEND_BUFFER_BYTES = 32 * 1024
# Per queued (non-daphne) connection: frames waiting for ASGI send. A client
# that reads keeps this near zero; one that stops reading fills it within
# seconds and is then sent nothing until it drains.
QUEUED_FRAMES = 32
GRACE_S = 1.0
_installed = False
# permessage-deflate: each frame compressed on its own, by a fresh compressor (no context to share), level 6 with
# a 4 KiB window: as small as our frames' repetition needs (the keys of neighbouring quotes), and about half the
# set-up cost of the default 32 KiB for the same bytes out (a 28-quote delta frame, measured side by side on the
# 2-core EPYC). A client that asks for a smaller server window still gets compression, from autobahn, per
# connection.
DEFLATE_LEVEL = 6
DEFLATE_WINDOW_BITS = 12
DEFLATE_MEM_LEVEL = 8
CLIENT_WINDOW_BITS = 9  # asked of clients that allow it: a 512-byte window for their few small messages
# One piece of a compressed client message is inflated no further than this: else a 1 KB message could cost daphne's
# whole 1 MiB limit. Under it, the frame guard (below) refuses the message once its inflated bytes pass
# protocol.MAX_MESSAGE_BYTES (too_large, 1009, as for an uncompressed one); past it autobahn drops the connection.
INFLATE_LIMIT_BYTES = 8 * MAX_MESSAGE_BYTES
compress_min_bytes = 256  # set from TICKER_WS_COMPRESS_MIN_BYTES by install()


class Frame:
    """One frame's text, its kind and step, and its encodings for the server, made once for every outlet.

    Made from ``text`` (a str) or ``payload`` (its UTF-8 bytes, as the fan-out assembles quotes frames
    from pieces); the other form is made on first use.
    """

    __slots__ = ("_text", "_payload", "step", "kind", "compress", "wire", "deflated", "prepared")

    def __init__(
        self,
        text: str | None = None,
        step: int = 0,
        kind: str = "quotes",
        *,
        payload: bytes | None = None,
        compress: bool = True,
    ):
        self._text, self._payload = text, payload
        self.step, self.kind = step, kind
        # False: sent uncompressed even where permessage-deflate was negotiated (a frame made for one
        # connection, past the fan-out's budget: compressing it would cost a compressor per client per step).
        self.compress = compress
        self.wire: bytes | None = None  # the whole RFC 6455 frame, made by the first daphne outlet that writes it
        # What a connection with permessage-deflate gets: compressed, or ``wire`` (small, or ``compress`` off).
        self.deflated: bytes | None = None
        self.prepared: Any = None  # autobahn's PreparedMessage, made only for its slow path

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self._payload.decode()
        return self._text

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            self._payload = self._text.encode()
        return self._payload


def text_frame(payload: bytes, first: int = 0x81) -> bytes:
    """One final, unmasked text frame as a server sends it (RFC 6455 5.2; 5.1: a server never masks).

    ``first`` is the header's first byte: FIN and the text opcode, plus RSV1 (0xC1) for a compressed message.
    """
    length = len(payload)
    if length < 126:
        return (_SHORT_HEADERS[length] if first == 0x81 else bytes((first, length))) + payload
    if length < 65536:
        return bytes((first, 0x7E)) + length.to_bytes(2, "big") + payload
    return bytes((first, 0x7F)) + length.to_bytes(8, "big") + payload


_SHORT_HEADERS = [bytes((0x81, n)) for n in range(126)]


def deflate(payload: bytes) -> bytes:
    """A message's payload as permessage-deflate sends it: deflated on its own, with the 4-byte tail that
    every sync flush ends with removed (RFC 7692 7.2.1); the receiver appends it again."""
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -DEFLATE_WINDOW_BITS, DEFLATE_MEM_LEVEL)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def deflated_frame(frame: Frame) -> bytes:
    """What a connection that negotiated permessage-deflate is sent for ``frame``: compressed (RSV1 set) when
    it may be (``Frame.compress``) and is at least ``compress_min_bytes`` long, and when that is smaller;
    otherwise the plain frame."""
    payload = frame.payload
    if frame.compress and len(payload) >= compress_min_bytes:
        data = deflate(payload)
        if len(data) < len(payload):
            metrics.frame_compressed(len(payload), len(data))
            return text_frame(data, 0xC1)
    wire = frame.wire
    if wire is None:
        wire = frame.wire = text_frame(payload)
    return wire


class Outlet(Protocol):
    """What a connection gives the hub: see the module docstring."""

    @property
    def backlogged(self) -> bool: ...

    def write(self, frame: Frame) -> None: ...


def under_daphne() -> bool:
    return "daphne.server" in sys.modules


# -- daphne ---------------------------------------------------------------


def install() -> None:
    """Register the shutdown notice with daphne's reactor, and say if the versions differ from the verified ones."""
    global _installed, compress_min_bytes
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
    # protocols (per-frame limits, the header deadline) once the reactor runs, before it accepts a connection.
    reactor.callWhenRunning(install_guards, settings)
    compress_min_bytes = settings.TICKER_WS_COMPRESS_MIN_BYTES
    if settings.TICKER_WS_COMPRESSION:
        # daphne makes its WebSocket factory when it starts to listen, after importing the application.
        reactor.callWhenRunning(enable_compression)
    _installed = True


# -- abuse by one client (issue 21) ----------------------------------------


def install_guards(settings: Any) -> bool:
    """Give every daphne server our WebSocket protocol (per-frame limits) and HTTP channel (header deadline).

    False, and an ERROR naming what is gone, if this daphne, autobahn or Twisted lacks what they need: the
    server then runs unguarded rather than not at all.
    """
    missing = guards_missing()
    if missing:
        log.error(
            "per-frame limits and the header deadline are OFF: %s no longer exist (see ticker/edge/server.py)",
            ", ".join(missing),
        )
        return False
    websocket_class, channel_class, generic = _guard_classes()
    websocket_class.frame_rate = settings.TICKER_WS_FRAME_RATE
    websocket_class.frame_burst = settings.TICKER_WS_FRAME_BURST
    channel_class.header_timeout_s = settings.TICKER_HEADER_TIMEOUT_S
    servers = [server for server in _servers() if hasattr(server, "ws_factory") and hasattr(server, "http_factory")]
    for server in servers:
        _log_access_through_logging(server)
        server.ws_factory.protocol = websocket_class
        # Twisted's HTTPFactory calls ``protocol()``: its own factory wraps the channel in the proxy that picks
        # HTTP/1.1 or HTTP/2 (after TLS ALPN); ours does the same with our channel.
        server.http_factory.protocol = lambda: generic(channel_class())
    if not servers:
        log.error(
            "no daphne server found: per-frame limits and the header deadline are OFF (see ticker/edge/server.py)"
        )
    return bool(servers)


def _log_access_through_logging(server: Any) -> None:
    """daphne writes its access log straight to stdout by default (``AccessLogGenerator``): one line per static
    file and health check, no process id, not JSON. Its default logger is replaced with ``logs.access_action``
    (issue 20); an access log the operator asked for with ``--access-log FILE`` is left alone."""
    current = getattr(server, "action_logger", None)
    if getattr(current, "stream", None) is sys.stdout:
        server.action_logger = logs.access_action


# What the guards use that autobahn, daphne and Twisted do not promise (verified against VERIFIED_WITH):
# autobahn's frame parser calls ``onFrameBegin`` with ``current_frame`` (opcode, rsv, length) set for every frame
# and ``onFrameData`` for each piece of its payload, and stops when that returns False; ``inside_message``,
# ``failedByMe`` (skip delivering the message), ``data`` (the unparsed buffer) and ``_perMessageCompress``;
# daphne's ``Server.ws_factory`` / ``http_factory``; Twisted's ``_GenericHTTPChannelProtocol`` and HTTPChannel's
# ``allContentReceived`` / ``requestDone`` / ``persistent`` / ``timeoutConnection``.
_GUARD_NEEDS = (
    (
        "autobahn.websocket.protocol",
        "WebSocketProtocol",
        ("onFrameBegin", "onFrameData", "processData", "onMessageFrameData", "sendCloseFrame", "STATE_OPEN"),
    ),
    ("autobahn.websocket.protocol", "FrameHeader", ()),
    ("twisted.web.http", "_GenericHTTPChannelProtocol", ()),
    ("twisted.web.http", "HTTPChannel", ("allContentReceived", "requestDone", "persistent", "timeoutConnection")),
)
# Set on every connection by autobahn's _connectionMade (not on the class): checked on the first one.
_GUARD_INSTANCE_NEEDS = ("current_frame", "inside_message", "failedByMe", "data", "_perMessageCompress")


def guards_missing() -> list[str]:
    """What the guards need that the installed autobahn, daphne or Twisted lacks (empty: all there)."""
    import importlib
    import inspect

    missing = []
    for module_name, name, attributes in _GUARD_NEEDS:
        owner = getattr(importlib.import_module(module_name), name, None)
        if owner is None:
            missing.append(f"{module_name}.{name}")
            continue
        missing += [f"{name}.{attribute}" for attribute in attributes if not hasattr(owner, attribute)]
    from autobahn.websocket.protocol import WebSocketProtocol

    try:
        parser = inspect.getsource(WebSocketProtocol.processData)
    except (AttributeError, OSError, TypeError):
        parser = None  # installed without sources: the attribute checks above are all we can do
    if parser is not None and ("self.onFrameBegin()" not in parser or "fr = self.onFrameData(payload)" not in parser):
        missing.append("autobahn's processData calling onFrameBegin and onFrameData")
    return missing


_REFUSAL_CLOSE_CODES = {RATE_LIMITED: 1008, TOO_FRAGMENTED: 1008, TOO_LARGE: 1009}


def _refusal_message(reason: str, rate: float, burst: int) -> str:
    if reason == RATE_LIMITED:
        return (
            f"More than {rate:g} frames a second (bursts of {burst}): closing. Reconnect and send less often; "
            "one subscribe can name many symbols."
        )
    if reason == TOO_FRAGMENTED:
        return f"A message may be sent in at most {MAX_MESSAGE_FRAGMENTS} frames: closing."
    return f"Messages are at most {MAX_MESSAGE_BYTES} bytes."


@functools.cache
def _guard_classes() -> tuple[type, type, type]:
    """Our daphne WebSocket protocol and Twisted HTTP channel, and Twisted's HTTP/1.1-or-2 proxy: made on first
    use, so that importing this module outside daphne imports neither autobahn nor Twisted."""
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol

    return _guarded_websocket(WebSocketProtocol), _header_deadline_channel(HTTPChannel), _GenericHTTPChannelProtocol


def _guarded_websocket(base: type) -> type:
    class GuardedWebSocketProtocol(base):
        """daphne's WebSocket protocol, with every client frame counted as its header is read (issue 21).

        Past the frame budget, the fragment cap or the size limit the client gets one error frame and the
        close (1008, or 1009 for size), and nothing more it sent is parsed: the unparsed buffer is dropped,
        reading stops and the write side is shut once the close is out; autobahn's close-handshake timeout
        (1 s) then cuts the TCP connection if the client has not closed it.
        """

        frame_rate, frame_burst = 200.0, 250  # from settings, by install_guards
        guard: FrameGuard | None = None
        refused: int | None = None  # the close code, once refused

        def onOpen(self) -> None:
            global _guard_instance_ok
            if _guard_instance_ok is None:
                lost = [name for name in _GUARD_INSTANCE_NEEDS if not hasattr(self, name)]
                if lost:
                    log.error(
                        "per-frame limits are OFF: %s no longer exist (see ticker/edge/server.py)", ", ".join(lost)
                    )
                _guard_instance_ok = not lost
            if _guard_instance_ok:
                self.guard = FrameGuard(
                    rate=self.frame_rate,
                    burst=self.frame_burst,
                    max_fragments=MAX_MESSAGE_FRAGMENTS,
                    max_bytes=MAX_MESSAGE_BYTES,
                    now=time.monotonic(),
                )
            super().onOpen()

        def onFrameBegin(self) -> None:
            frame, guard = self.current_frame, self.guard
            if guard is not None and frame.opcode != 8:  # a client may always close
                data = frame.opcode < 8
                first = data and not self.inside_message
                compressed = first and frame.rsv == 4 and self._perMessageCompress is not None
                if reason := guard.frame(
                    data=data, first=first, length=frame.length, now=time.monotonic(), compressed=compressed
                ):
                    self._refuse(reason)
                    return
            super().onFrameBegin()

        def onMessageFrameData(self, payload: bytes) -> None:
            guard = self.guard
            if guard is not None and guard.compressed and (reason := guard.inflated(len(payload))):
                self._refuse(reason)
                return
            super().onMessageFrameData(payload)

        def onFrameData(self, payload: bytes) -> bool | None:
            if self.refused is not None:
                return False  # autobahn's parser stops here: nothing after a refused frame is parsed
            result = super().onFrameData(payload)
            return False if self.refused is not None else result

        def dataReceived(self, data: bytes) -> None:
            if self.refused is None:
                super().dataReceived(data)

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            # The consumer (and its metrics) hear the code we closed with, not 1006 for the cut TCP connection.
            super().onClose(wasClean, self.refused or code, reason)

        def _refuse(self, reason: str) -> None:
            self.refused = code = _REFUSAL_CLOSE_CODES[reason]
            self.failedByMe = True  # autobahn delivers nothing more of the message being received
            self.data = b""
            metrics.message_refused(reason)
            log.info("closing: %s (frames)", reason)
            if self.state == self.STATE_OPEN:
                error = ProtocolError(reason, _refusal_message(reason, self.frame_rate, self.frame_burst))
                self.sendMessage(encode(error.frame()).encode())
                self.sendCloseFrame(code=code, isReply=False)
            transport = self.transport
            transport.pauseProducing()
            if (shut_write := getattr(transport, "loseWriteConnection", None)) is not None:
                shut_write()  # the error and the close, then FIN: the client sees its code, not a reset

    return GuardedWebSocketProtocol


_guard_instance_ok: bool | None = None  # decided on the first WebSocket


def _header_deadline_channel(base: type) -> type:
    class HeaderDeadlineChannel(base):
        """Twisted's HTTP channel with a deadline for the whole request: line, headers and body (issue 21).

        Armed when the connection opens and, kept alive, when a response ends; disarmed once a request is
        complete, so a WebSocket upgrade, an SSE stream or a long-poll is never cut by it. When it
        fires the connection is closed however many bytes have trickled in (Twisted's own idle timeout restarts
        on every byte).
        """

        header_timeout_s = 10.0  # from settings, by install_guards
        _header_deadline: Any = None

        def connectionMade(self) -> None:
            super().connectionMade()
            self._arm_header_deadline()

        def allContentReceived(self) -> None:
            # The whole request is in (headers, and the body a POST may have): a request body trickled one
            # byte at a time held a connection as long as slow headers did (review of issue 21).
            self._disarm_header_deadline()
            super().allContentReceived()

        def requestDone(self, request: Any) -> None:
            if self.persistent:
                # Armed first: Twisted may parse a pipelined next request (and disarm) within requestDone.
                self._arm_header_deadline()
            super().requestDone(request)

        def connectionLost(self, reason: Any) -> None:
            self._disarm_header_deadline()
            super().connectionLost(reason)

        def _arm_header_deadline(self) -> None:
            self._disarm_header_deadline()
            self._header_deadline = self.callLater(self.header_timeout_s, self._headers_late)

        def _disarm_header_deadline(self) -> None:
            if self._header_deadline is not None:
                if self._header_deadline.active():
                    self._header_deadline.cancel()
                self._header_deadline = None

        def _headers_late(self) -> None:
            self._header_deadline = None
            if getattr(self.transport, "negotiatedProtocol", None) == b"h2":
                return  # TLS chose HTTP/2: Twisted's proxy moved the connection to an H2Connection, not this channel
            log.debug("closing a connection whose request headers did not arrive within %s s", self.header_timeout_s)
            # Twisted's own idle-timeout close: FIN once anything written has gone, a reset if that takes 15 s.
            self.timeoutConnection()

    return HeaderDeadlineChannel


def enable_compression() -> bool:
    """Let daphne's WebSocket factories accept permessage-deflate; False (and a warning) if none was found."""
    factories = [server.ws_factory for server in _servers() if hasattr(server, "ws_factory")]
    for factory in factories:
        factory.setProtocolOptions(perMessageCompressionAccept=accept_deflate)
    if not factories:
        log.warning("no daphne WebSocket factory found: WebSockets stay uncompressed (see ticker/edge/server.py)")
    return bool(factories)


def accept_deflate(offers: list) -> Any:
    """autobahn's ``perMessageCompressionAccept``: the first permessage-deflate offer, answered with
    ``server_no_context_takeover``, ``client_no_context_takeover`` (a server may ask for it unasked, RFC 7692
    7.1.1.2; autobahn's parser always allows it) and, when the client offered ``client_max_window_bits``,
    ``client_max_window_bits=9``: a client's messages are a few small commands, not worth the 32 KiB inflate
    window autobahn would otherwise keep for every connection."""
    from autobahn.websocket.compress import PerMessageDeflateOffer

    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return _deflate_accept_class()(
                offer,
                request_no_context_takeover=offer.accept_no_context_takeover,
                request_max_window_bits=CLIENT_WINDOW_BITS if offer.accept_max_window_bits else 0,
                no_context_takeover=True,
                max_message_size=INFLATE_LIMIT_BYTES,
            )
    return None


_DeflateAccept: Any = None


def _deflate_accept_class():
    """autobahn's offer accept, saying ``server_no_context_takeover`` even when the client did not ask: autobahn
    writes it only when asked, and a client may then keep its 32 KiB window for nothing (RFC 7692 7.1.1.1)."""
    global _DeflateAccept
    if _DeflateAccept is None:
        from autobahn.websocket.compress import PerMessageDeflateOfferAccept

        class DeflateAccept(PerMessageDeflateOfferAccept):
            def get_extension_string(self):
                text = super().get_extension_string()
                return text if "server_no_context_takeover" in text else text + "; server_no_context_takeover"

        _DeflateAccept = DeflateAccept
    return _DeflateAccept


def _servers() -> set:
    from twisted.internet import reactor

    found = {getattr(getattr(reader, "factory", None), "server", None) for reader in reactor.getReaders()}
    return {server for server in found if hasattr(server, "connections")}


def _transport(scope: dict):
    """The Twisted transport carrying this ASGI connection, or None outside daphne.

    A WebSocket consumer runs in the task daphne created for it, so that task
    identifies its connection; an HTTP view runs in a task of Django's, so it
    is matched by peer address (which ``--proxy-headers`` would replace: then
    nothing is found and the stream simply has no backpressure).
    """
    if not under_daphne():
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


def _limit_buffers(transport) -> None:
    transport.bufferSize = WRITE_BUFFER_BYTES
    with contextlib.suppress(OSError, AttributeError):
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER_BYTES)


def _websocket_protocol(transport):
    """daphne's WebSocket protocol on this transport, or None (plain HTTP, or TLS, whose transport wraps it)."""
    from daphne.ws_protocol import WebSocketProtocol

    protocol = getattr(transport, "protocol", None)
    return protocol if isinstance(protocol, WebSocketProtocol) else None


_PRIVATE = (("transport", ("_tempDataLen", "offset", "dataBuffer", "socket")), ("protocol", ("_perMessageCompress",)))
_fast_path: bool | None = None  # decided on the first daphne WebSocket


def fast_path_missing(transport, protocol) -> list[str]:
    """The private attributes the direct write needs that this transport or protocol lacks, and whether our own
    framing (``text_frame``) still agrees byte for byte with autobahn's."""
    owners = {"transport": transport, "protocol": protocol}
    missing = [f"{owner}.{name}" for owner, names in _PRIVATE for name in names if not hasattr(owners[owner], name)]
    if not hasattr(protocol, "send_queue"):
        missing.append("protocol.send_queue")
    if not _framing_agrees():
        missing.append("autobahn's framing of a text frame as ticker.edge.server.text_frame makes it")
    if not _deflate_agrees():
        missing.append("autobahn's reading of a frame that ticker.edge.server.deflate compressed")
    return missing


def _deflate_agrees() -> bool:
    """Frames compressed by ``deflate`` read back by autobahn's own client-side permessage-deflate, as a client
    that keeps its inflate window across messages (allowed: our answer only says the server will not)."""
    from autobahn.websocket.compress import PerMessageDeflate

    payload = b'{"type":"quotes","quotes":[' + b",".join([b'{"symbol":"AAPL","seq":1}'] * 40) + b"]}"
    try:
        reader = PerMessageDeflate(False, False, False, 15, 0, None)
        for _ in range(2):  # twice: the second message must decode after the first, on the same window
            reader.start_decompress_message()
            data = reader.decompress_message_data(deflate(payload))
            reader.end_decompress_message()
            if data != payload:
                return False
    except Exception:
        return False
    return True


def shares_deflate(protocol) -> bool:
    """True if this connection negotiated permessage-deflate in a form our shared compressed frames fit:
    no server context takeover, and a server window at least ours."""
    pmce = getattr(protocol, "_perMessageCompress", None)
    return (
        pmce is not None
        and pmce.EXTENSION_NAME == "permessage-deflate"
        and getattr(pmce, "server_no_context_takeover", False) is True
        and getattr(pmce, "server_max_window_bits", 0) >= DEFLATE_WINDOW_BITS
    )


def _framing_agrees() -> bool:
    """Our header against autobahn's PreparedMessage, at each of RFC 6455's three length encodings."""
    from autobahn.websocket.protocol import PreparedMessage

    try:
        for size in (0, 125, 126, 65535, 65536):
            payload = b"x" * size
            prepared = PreparedMessage(payload, isBinary=False, applyMask=False, doNotCompress=False)
            if prepared.payloadHybi != text_frame(payload):
                return False
    except Exception:
        return False
    return True


class DaphneOutlet:
    """A daphne WebSocket on plain TCP: frames prepared once, written straight to the socket when it can take them."""

    __slots__ = ("protocol", "transport", "direct", "deflate")

    def __init__(self, protocol, transport, direct: bool):
        self.protocol, self.transport = protocol, transport
        # Our own frames, compressed or not, fit this connection: or autobahn frames (and compresses) each one.
        self.deflate = shares_deflate(protocol)
        self.direct = direct and (self.deflate or getattr(protocol, "_perMessageCompress", None) is None)

    @property
    def compression(self) -> str:
        """What this connection negotiated: "shared" (our frames, compressed once), "per_connection" or "none"."""
        if self.deflate:
            return "shared"
        return "none" if getattr(self.protocol, "_perMessageCompress", None) is None else "per_connection"

    @property
    def backlogged(self) -> bool:
        return self.transport.producerPaused

    def write(self, frame: Frame) -> None:
        """Send a frame, or drop it once the WebSocket is closing (as daphne's own send does).

        The frame is framed once for every connection it goes to (``Frame.wire``), by ``text_frame``: a
        header and the payload, no library call, so a frame made for one client (a personal watchlist)
        costs no more to frame than one shared by thousands; and compressed once for every connection
        that negotiated permessage-deflate (``Frame.deflated``).
        """
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return
        if not self.direct or protocol.send_queue:
            prepared = frame.prepared
            if prepared is None:
                from autobahn.websocket.protocol import PreparedMessage

                prepared = frame.prepared = PreparedMessage(
                    frame.payload, isBinary=False, applyMask=False, doNotCompress=False
                )
            protocol.sendPreparedMessage(prepared)  # compressed per connection, or behind autobahn's own queue
            return
        if self.deflate:
            data = frame.deflated
            if data is None:
                data = frame.deflated = deflated_frame(frame)
        else:
            data = frame.wire
            if data is None:
                data = frame.wire = text_frame(frame.payload)
        transport = self.transport
        # Twisted's write only buffers, and sends on a later turn of the loop;
        # when nothing is queued the socket can take the frame right now.
        if transport.connected and not transport._tempDataLen and transport.offset == len(transport.dataBuffer):
            try:
                sent = transport.socket.send(data)
            except OSError:
                sent = 0  # would block, or broken: Twisted's own write finds out and closes it
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    async def drained(self) -> None:
        """Returns at once: under daphne the client's own replies are buffered by Twisted, as ASGI sends were."""

    def close(self, code: int, reason: str = "") -> None:
        protocol = self.protocol
        if protocol.state == protocol.STATE_OPEN:
            # When the client answers our close, autobahn's server drops the TCP connection with
            # abort=True, a reset. A browser that has not yet handed our close frame to the page then
            # reports 1006 with no reason: seen in Chromium about one time in three for a 1013 sent right
            # after the accept, so the page took "server full" for "WebSocket blocked" and fell back. Once
            # the handshake is done, close with a FIN instead, as RFC 6455 (7.1.1) asks of a server.
            drop = protocol.dropConnection
            protocol.dropConnection = lambda abort=False: drop(abort=False)
            protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode() or None, isReply=False)

    def stop(self) -> None:
        pass


def close_websockets():
    """Send 1001 on every open WebSocket; the Deferred fires once all closed, or after GRACE_S."""
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet import reactor, task

    sockets = [
        protocol
        for server in _servers()
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


# -- every server ---------------------------------------------------------


class QueuedOutlet:
    """A WebSocket through ASGI ``send``: a bounded queue drained by the connection's own task."""

    deflate = False  # whatever the server negotiated, it compresses (per connection): our frames are not shared
    compression = "server"  # what that is, this module cannot tell

    def __init__(self, send: Callable[[dict], Awaitable[None]], transport=None, limit: int = QUEUED_FRAMES):
        self._send = send
        self._transport = transport  # daphne over TLS: Twisted's backpressure still applies
        self._queue: asyncio.Queue[dict] = asyncio.Queue()
        self._limit = limit
        self._room = asyncio.Event()  # set while fewer than ``limit`` messages wait
        self._room.set()
        self._task = asyncio.create_task(self._drain(), name="websocket-outlet")

    @property
    def backlogged(self) -> bool:
        return self._queue.qsize() >= self._limit or bool(
            self._transport is not None and self._transport.producerPaused
        )

    def write(self, frame: Frame) -> None:
        self._put({"type": "websocket.send", "text": frame.text})

    def close(self, code: int, reason: str = "") -> None:
        self._put({"type": "websocket.close", "code": code, "reason": reason})

    async def drained(self) -> None:
        """Wait until the queue is below its bound: the consumer waits here before acting on a client's
        message, so a client that sends but does not read is held back by TCP, not queued for without end."""
        await self._room.wait()

    def _put(self, message: dict) -> None:
        self._queue.put_nowait(message)
        if self._queue.qsize() >= self._limit:
            self._room.clear()

    def stop(self) -> None:
        self._task.cancel()
        self._room.set()  # nobody may wait on a connection that has gone

    async def _drain(self) -> None:
        try:
            await self._drain_until_broken()
        finally:
            self._room.set()  # the connection is going away: a waiting consumer goes on to its disconnect

    async def _drain_until_broken(self) -> None:
        while True:
            message = await self._queue.get()
            if self._queue.qsize() < self._limit:
                self._room.set()
            try:
                await self._send(message)
            except Exception as exc:
                if message["type"] != "websocket.close":
                    log.info("a WebSocket send failed (%s); the connection is going away", exc)
                    return
                # autobahn, under daphne, refuses RFC codes from an application (django/daphne#374).
                with contextlib.suppress(Exception):
                    await self._send({**message, "code": 4000 + message["code"] % 1000})


def websocket_outlet(scope: dict, send: Callable[[dict], Awaitable[None]]) -> DaphneOutlet | QueuedOutlet:
    """The outlet for an accepted WebSocket; call it from the consumer's own task (``connect``)."""
    global _fast_path
    transport = _transport(scope)
    if transport is None:
        return QueuedOutlet(send)
    _limit_buffers(transport)
    protocol = _websocket_protocol(transport)
    if protocol is None:
        return QueuedOutlet(send, transport)
    if _fast_path is None:
        missing = fast_path_missing(transport, protocol)
        if missing:
            log.warning(
                "daphne's direct write is off: %s no longer exist (see ticker/edge/server.py)", ", ".join(missing)
            )
        _fast_path = not missing
    return DaphneOutlet(protocol, transport, _fast_path)


class StreamBackpressure:
    """An HTTP stream's (SSE's) backpressure signal: True while daphne holds more than its bound for the client."""

    __slots__ = ("transport",)

    def __init__(self, scope: dict):
        self.transport = _transport(scope)
        if self.transport is not None:
            _limit_buffers(self.transport)

    @property
    def backlogged(self) -> bool:
        return self.transport is not None and self.transport.producerPaused
