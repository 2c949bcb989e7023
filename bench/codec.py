"""The client's side of RFC 6455 for every raw-socket client here: the opening handshake, frames out, frames in.

Used by the transport benchmark (bench/transports.py), the fan-out load
generator (bench/loadgen.py) and the tests that need a client no library
would be (a reader that stalls, one that never answers pings). The Upgrade
request is the product's own (ticker.edge.handshake, which the Lab page shows),
so the two cannot drift apart.
"""

from __future__ import annotations

import os
import zlib

from ticker.edge import handshake

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
RSV1 = 0x40  # first header byte: a permessage-deflate compressed message (RFC 7692 6)
# What a browser offers (RFC 7692 7.1); the site answers with no context takeover on both sides.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
DELTA_PROTOCOL = "ticker.v2.json"  # ticker.wire.protocol.DELTA_SUBPROTOCOL: quotes frames carry changed fields only
_TAIL = b"\x00\x00\xff\xff"


def upgrade_request(
    netloc: str,
    path: str = "/ws/quotes/",
    origin: str | None = None,
    *,
    deflate: bool = False,
    delta: bool = False,
    cookie: str | None = None,
) -> bytes:
    """The bytes that open a WebSocket to ``path`` on ``netloc`` (HOST:PORT), from ``origin`` (default: that site);
    ``deflate``: offer permessage-deflate, ``delta``: ask for the delta format (subprotocol ticker.v2.json);
    ``cookie``: the Cookie header's value (a signed-in page's ``sessionid=...``)."""
    request = handshake.upgrade_request(
        path=path, http_host=netloc, origin=origin or f"http://{netloc}", key=handshake.new_key(), cookie=cookie
    )
    extra = (f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if deflate else "") + (
        f"Sec-WebSocket-Protocol: {DELTA_PROTOCOL}\r\n" if delta else ""
    )
    return (request[:-2] + extra + "\r\n").encode()


def inflate(payload: bytes) -> bytes:
    """A compressed message's payload as the application reads it (RFC 7692 7.2.2: the 4-byte tail put back).

    A fresh decompressor per message: the site negotiates server_no_context_takeover.
    """
    return zlib.decompressobj(-15).decompress(payload + _TAIL)


def client_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """One final, masked client frame (RFC 6455 5.2; 5.3: clients must mask, and any mask key will do here)."""
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    mask = os.urandom(4)
    return header + mask + _masked(payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask`` (RFC 6455 5.3), one big-integer XOR instead of a loop per byte."""
    length = len(payload)
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


def frame_at(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int, int, bytes | None] | None:
    """The frame that starts at ``data[pos]``, if all of it lies before ``end``; None until it has fully arrived.

    Returns (opcode, payload start, payload end, mask key or None), so a reader
    can look at the payload where it lies, without a copy.
    """
    if end - pos < 2:
        return None
    second = data[pos + 1]
    length, at = second & 0x7F, pos + 2
    if length == 126:
        if end - at < 2:
            return None
        length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
    elif length == 127:
        if end - at < 8:
            return None
        length, at = int.from_bytes(data[at : at + 8], "big"), at + 8
    mask = None
    if second & 0x80:
        if end - at < 4:
            return None
        mask, at = bytes(data[at : at + 4]), at + 4
    if at + length > end:
        return None
    return data[pos] & 0x0F, at, at + length, mask


def take_frame(buffer: bytearray) -> tuple[int, bytes] | None:
    """Remove one whole frame from the front of ``buffer``: (opcode, unmasked payload); None until one has arrived."""
    frame = take_message(buffer)
    return None if frame is None else frame[:2]


def take_message(buffer: bytearray) -> tuple[int, bytes, bool] | None:
    """``take_frame``, and whether the frame had RSV1 set (compressed, RFC 7692), payload left as it came."""
    frame = frame_at(buffer, 0, len(buffer))
    if frame is None:
        return None
    opcode, start, stop, mask = frame
    compressed = bool(buffer[0] & RSV1)
    payload = bytes(buffer[start:stop])
    del buffer[:stop]
    return opcode, _masked(payload, mask) if mask else payload, compressed
