"""A real WebSocket opening handshake, captured byte for byte, for the Lab page.

The web process opens a plain TCP connection to its own listening socket,
sends the HTTP Upgrade request a browser would send, and records the
``101 Switching Protocols`` answer exactly as it came back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

from ticker.wire.protocol import DELTA_SUBPROTOCOL

# RFC 6455 section 1.3: the GUID the server appends to the key before hashing.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# What the dashboard's browser offers: the delta format (static/ticker/js/transport.js asks for it) and
# permessage-deflate (Chromium offers it by itself), so the captured answer shows what this server
# negotiates with a real page (issue 20: without an offer the answer named neither).
BROWSER_OFFER = (
    ("Sec-WebSocket-Protocol", DELTA_SUBPROTOCOL),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
)


def expected_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64 (RFC 6455 section 4.1)."""
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(
    *, path: str, http_host: str, origin: str, key: str, offer: tuple[tuple[str, str], ...] = ()
) -> str:
    """The HTTP Upgrade request a browser sends to open a WebSocket (RFC 6455 section 4.1), with the
    subprotocol and extension headers of ``offer`` (none by default: plain whole-quote JSON, uncompressed)."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {http_host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"Origin: {origin}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in offer) + "\r\n"
    )


def negotiated(head: str) -> dict[str, str | None]:
    """The subprotocol and extensions a 101 answer chose (RFC 6455 sections 4.2.2 and 9.1); None for one it left out."""
    found: dict[str, str | None] = {"protocol": None, "extensions": None}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        key = {"sec-websocket-protocol": "protocol", "sec-websocket-extensions": "extensions"}.get(name.strip().lower())
        if key:
            found[key] = value.strip()
    return found


async def capture(*, host: str, port: int, http_host: str, origin: str, path: str = "/ws/quotes/") -> dict:
    """Open a WebSocket to host:port offering what a browser offers, return the request and response heads
    as text and what was negotiated, then close it."""
    key = new_key()
    request = upgrade_request(path=path, http_host=http_host, origin=origin, key=key, offer=BROWSER_OFFER)
    # Async, on the server's own loop: a blocking socket in a worker thread
    # could wait on the very thread the WebSocket consumer needs.
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(request.encode())
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        head = raw.decode("latin-1")
        # A masked close frame (opcode 8, empty payload) so the server sees a clean goodbye.
        writer.write(bytes([0x88, 0x80]) + os.urandom(4))
        await writer.drain()
    finally:
        writer.close()
    return {
        "request": request,
        "response": head,
        "request_bytes": len(request.encode()),
        "response_bytes": len(head.encode("latin-1")),
        "accept_expected": expected_accept(key),
        "accept_ok": f"Sec-WebSocket-Accept: {expected_accept(key)}".lower() in head.lower(),
        "negotiated": negotiated(head),
    }
