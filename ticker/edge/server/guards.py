"""Abuse by one client (issue 21): per-frame limits on daphne's WebSockets, a deadline for HTTP requests.

daphne's WebSocket factory gets our protocol, which counts every client frame as its header is read
(``ticker.edge.ratelimit.FrameGuard``) and, past a limit, sends one error frame and the close; daphne's HTTP
factory gets a Twisted channel that closes a connection whose request is not complete within
``TICKER_HEADER_TIMEOUT_S``. Both hook autobahn's and Twisted's parsers, which neither promises:
``guards_missing`` checks what they use at start-up.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from typing import Any

from ticker.edge.ratelimit import RATE_LIMITED, TOO_FRAGMENTED, TOO_LARGE, FrameGuard
from ticker.edge.server.transports import servers as _servers
from ticker.ops import logs, metrics
from ticker.wire.protocol import MAX_MESSAGE_BYTES, MAX_MESSAGE_FRAGMENTS, ProtocolError, encode

log = logging.getLogger(__name__)


def install_guards(settings: Any) -> bool:
    """Give every daphne server our WebSocket protocol (per-frame limits) and HTTP channel (header deadline).

    False, and an ERROR naming what is gone, if this daphne, autobahn or Twisted lacks what they need: the
    server then runs unguarded rather than not at all.
    """
    missing = guards_missing()
    if missing:
        log.error(
            "per-frame limits and the header deadline are OFF: %s no longer exist (see ticker/edge/server/)",
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
        log.error("no daphne server found: per-frame limits and the header deadline are OFF (see ticker/edge/server/)")
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

        def connectionMade(self) -> None:
            super().connectionMade()
            _release_http_channel(self.transport)

        def onOpen(self) -> None:
            self.guard = _frame_guard(self)
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
            _refuse(self, reason)

    return GuardedWebSocketProtocol


_guard_instance_ok: bool | None = None  # decided on the first WebSocket


def _frame_guard(protocol: Any) -> FrameGuard | None:
    """A new connection's frame guard; None (and an ERROR, once) if autobahn no longer sets what it reads."""
    global _guard_instance_ok
    if _guard_instance_ok is None:
        lost = [name for name in _GUARD_INSTANCE_NEEDS if not hasattr(protocol, name)]
        if lost:
            log.error("per-frame limits are OFF: %s no longer exist (see ticker/edge/server/)", ", ".join(lost))
        _guard_instance_ok = not lost
    if not _guard_instance_ok:
        return None
    return FrameGuard(
        rate=protocol.frame_rate,
        burst=protocol.frame_burst,
        max_fragments=MAX_MESSAGE_FRAGMENTS,
        max_bytes=MAX_MESSAGE_BYTES,
        now=time.monotonic(),
    )


def _refuse(protocol: Any, reason: str) -> None:
    """A client frame went past a limit: one error frame and the close, and nothing more of it is read."""
    protocol.refused = code = _REFUSAL_CLOSE_CODES[reason]
    protocol.failedByMe = True  # autobahn delivers nothing more of the message being received
    protocol.data = b""
    metrics.message_refused(reason)
    log.info("closing: %s (frames)", reason)
    if protocol.state == protocol.STATE_OPEN:
        error = ProtocolError(reason, _refusal_message(reason, protocol.frame_rate, protocol.frame_burst))
        protocol.sendMessage(encode(error.frame()).encode())
        protocol.sendCloseFrame(code=code, isReply=False)
    transport = protocol.transport
    transport.pauseProducing()
    if (shut_write := getattr(transport, "loseWriteConnection", None)) is not None:
        shut_write()  # the error and the close, then FIN: the client sees its code, not a reset


class _Upgraded:
    """The producer of an upgraded connection's transport, in place of the HTTP channel it was upgraded from.

    Twisted's HTTP channel registers itself as its transport's producer, and daphne leaves it there when it
    hands the transport to the WebSocket protocol: the channel, its unfinished request and the request's
    headers stayed alive as long as the socket (about 2 KB a connection: ``bench_connmem``). While that
    request is unfinished the channel's ``pauseProducing`` and ``resumeProducing`` do nothing but note it (no
    request producer, and it never pauses the network while "handling" a request), so this one does nothing:
    the transport still sets ``producerPaused`` past its buffer, which the outlets read as backpressure."""

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


_UPGRADED = _Upgraded()


def _release_http_channel(transport: Any) -> None:
    """Put ``_UPGRADED`` in place of an upgraded connection's HTTP channel as its transport's producer, when the
    channel is in the state that makes them the same: handling its request, with no request producer."""
    channel = getattr(transport, "producer", None)
    if (
        channel is None
        or getattr(channel, "_handlingRequest", None) is not True
        or getattr(channel, "_requestProducer", False) is not None
        or not getattr(transport, "streamingProducer", False)
        or getattr(transport, "producerPaused", True)
    ):
        return
    transport.unregisterProducer()
    transport.registerProducer(_UPGRADED, True)


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
