"""A frame as it goes to every connection: its text, and its RFC 6455 and permessage-deflate encodings, made once.

The hub makes ``Frame``s; an outlet (ticker/edge/server/, ticker/edge/queued.py, the SSE outlet) writes them.
The encodings (``text_frame``, ``deflate``, ``deflated_frame``) are plain byte work with no server library, so a
frame shared by thousands of connections is framed and compressed once, whichever connection writes it first.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

# permessage-deflate: each frame compressed on its own, by a fresh compressor (no context to share), level 6 with
# a 4 KiB window: as small as our frames' repetition needs (the keys of neighbouring quotes), and about half the
# set-up cost of the default 32 KiB for the same bytes out (a 28-quote delta frame, measured side by side on the
# 2-core EPYC). A client that asks for a smaller server window still gets compression, from autobahn, per
# connection.
DEFLATE_LEVEL = 6
DEFLATE_WINDOW_BITS = 12
DEFLATE_MEM_LEVEL = 8


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
        return _MEDIUM_HEADER(first, 0x7E, length) + payload  # one call: ~0.2 us against ~0.5 (an alert frame)
    return bytes((first, 0x7F)) + length.to_bytes(8, "big") + payload


_SHORT_HEADERS = [bytes((0x81, n)) for n in range(126)]
_MEDIUM_HEADER = struct.Struct("!BBH").pack


def deflate(payload: bytes) -> bytes:
    """A message's payload as permessage-deflate sends it: deflated on its own, with the 4-byte tail that
    every sync flush ends with removed (RFC 7692 7.2.1); the receiver appends it again."""
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -DEFLATE_WINDOW_BITS, DEFLATE_MEM_LEVEL)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def deflated_frame(frame: Frame, min_bytes: int, compressed: Callable[[int, int], None] | None = None) -> bytes:
    """What a connection that negotiated permessage-deflate is sent for ``frame``: compressed (RSV1 set) when
    it may be (``Frame.compress``) and is at least ``min_bytes`` long, and when that is smaller; otherwise the
    plain frame. ``compressed(raw, deflated)`` is told the sizes of each frame compressed (the metrics)."""
    payload = frame.payload
    if frame.compress and len(payload) >= min_bytes:
        data = deflate(payload)
        if len(data) < len(payload):
            if compressed is not None:
                compressed(len(payload), len(data))
            return text_frame(data, 0xC1)
    wire = frame.wire
    if wire is None:
        wire = frame.wire = text_frame(payload)
    return wire
