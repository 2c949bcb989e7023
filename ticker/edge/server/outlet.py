"""The daphne outlet: a WebSocket's frames written straight to its socket; and an SSE stream's backpressure.

See the package's docstring (ticker/edge/server/__init__.py) for what it relies on in daphne 4.2.3, autobahn
26.10.2 and Twisted 26.10.0, and how it falls back when that is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ticker.edge.queued import QueuedOutlet
from ticker.edge.server.compression import deflate_agrees, shares_deflate
from ticker.edge.server.transports import limit_buffers, transport_of, websocket_protocol
from ticker.ops import metrics
from ticker.wire.frames import Frame, deflated_frame, text_frame

log = logging.getLogger(__name__)


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
        missing.append("autobahn's framing of a text frame as ticker.wire.frames.text_frame makes it")
    if not deflate_agrees():
        missing.append("autobahn's reading of a frame that ticker.wire.frames.deflate compressed")
    return missing


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

    __slots__ = ("protocol", "transport", "direct", "deflate", "compress_min_bytes")

    def __init__(self, protocol, transport, direct: bool, compress_min_bytes: int = 256):
        self.protocol, self.transport = protocol, transport
        self.compress_min_bytes = compress_min_bytes  # TICKER_WS_COMPRESS_MIN_BYTES: smaller frames go uncompressed
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
        self._send(self._encoded(frame))

    def write_all(self, frames: list[Frame]) -> None:
        """The frames in one socket write (a step's quotes and the alerts riding with it), or one by one where
        autobahn frames them."""
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return
        if not self.direct or protocol.send_queue:
            for frame in frames:
                self.write(frame)
            return
        data = self._encoded(frames[0])
        for frame in frames[1:]:  # one more, as a rule: the step's alert after its quotes
            data += self._encoded(frame)
        self._send(data)

    def _encoded(self, frame: Frame) -> bytes:
        if self.deflate:
            data = frame.deflated
            if data is None:
                data = frame.deflated = deflated_frame(frame, self.compress_min_bytes, metrics.frame_compressed)
        else:
            data = frame.wire
            if data is None:
                data = frame.wire = text_frame(frame.payload)
        return data

    def _send(self, data: bytes) -> None:
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


def websocket_outlet(
    scope: dict, send: Callable[[dict], Awaitable[None]], *, compress_min_bytes: int = 256
) -> DaphneOutlet | QueuedOutlet:
    """The outlet for an accepted WebSocket; call it from the consumer's own task (``connect``).

    ``compress_min_bytes``: frames shorter than this go uncompressed (TICKER_WS_COMPRESS_MIN_BYTES).
    """
    global _fast_path
    transport = transport_of(scope)
    if transport is None:
        return QueuedOutlet(send)
    limit_buffers(transport)
    protocol = websocket_protocol(transport)
    if protocol is None:
        return QueuedOutlet(send, transport)
    if _fast_path is None:
        missing = fast_path_missing(transport, protocol)
        if missing:
            log.warning(
                "daphne's direct write is off: %s no longer exist (see ticker/edge/server/)", ", ".join(missing)
            )
        _fast_path = not missing
    return DaphneOutlet(protocol, transport, _fast_path, compress_min_bytes)


class StreamBackpressure:
    """An HTTP stream's (SSE's) backpressure signal: True while daphne holds more than its bound for the client."""

    __slots__ = ("transport",)

    def __init__(self, scope: dict):
        self.transport = transport_of(scope)
        if self.transport is not None:
            limit_buffers(self.transport)

    @property
    def backlogged(self) -> bool:
        return self.transport is not None and self.transport.producerPaused
