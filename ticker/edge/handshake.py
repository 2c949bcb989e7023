"""A real WebSocket opening handshake, captured byte for byte, for the Lab page.

The web process opens a plain TCP connection to its own listening socket,
sends the HTTP Upgrade request a browser would send, and records the
``101 Switching Protocols`` answer exactly as it came back.

The request carries the page's own ``Cookie`` header, as a browser's upgrade does (same origin), so the
socket is the page's user's: it then asks the server ``{"action": "whoami"}`` and reports the user the server
saw on it (issue 23). The cookie's values are masked in the request shown (``sessionid=•••``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import zlib

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


MASK = "•••"
WHOAMI = json.dumps({"action": "whoami"})
WHOAMI_WAIT_S = 5


def masked_cookie(cookie: str) -> str:
    """A Cookie header's value with every cookie's value masked: ``sessionid=•••; csrftoken=•••``."""
    names = [part.partition("=")[0].strip() for part in cookie.split(";")]
    return "; ".join(f"{name}={MASK}" for name in names if name)


def upgrade_request(
    *,
    path: str,
    http_host: str,
    origin: str,
    key: str,
    offer: tuple[tuple[str, str], ...] = (),
    cookie: str | None = None,
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
        f"Origin: {origin}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in offer)
        + (f"Cookie: {cookie}\r\n" if cookie else "")
        + "\r\n"
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


def client_text(text: str) -> bytes:
    """One masked text frame, as a client sends it (RFC 6455 section 5.2; under 126 bytes)."""
    data, mask = text.encode(), os.urandom(4)
    return bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def read_text(reader: asyncio.StreamReader, inflater) -> str | None:
    """The next server frame's text (None for any other opcode); permessage-deflate's RSV1 frames inflated."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length >= 126:
        length = int.from_bytes(await reader.readexactly(2 if length == 126 else 8))
    payload = await reader.readexactly(length)
    if first & 0x40:  # RFC 7692 7.2.2: the frame's tail, taken off by the server, goes back before inflating
        payload = inflater.decompress(payload + b"\x00\x00\xff\xff")
    return payload.decode() if first & 0x0F == 0x1 else None


async def whoami(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str | None:
    """Ask the open socket who the server takes it for; the username, or None (anonymous)."""
    writer.write(client_text(WHOAMI))
    await writer.drain()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    async with asyncio.timeout(WHOAMI_WAIT_S):
        while True:
            text = await read_text(reader, inflater)
            if text is not None and (frame := json.loads(text)).get("type") == "whoami":
                return frame.get("user")


async def capture(
    *, host: str, port: int, http_host: str, origin: str, path: str = "/ws/quotes/", cookie: str | None = None
) -> dict:
    """Open a WebSocket to host:port offering what a browser offers (and the page's ``cookie``), return the
    request and response heads as text, what was negotiated and the user the server saw, then close it."""
    key = new_key()
    request = upgrade_request(
        path=path, http_host=http_host, origin=origin, key=key, offer=BROWSER_OFFER, cookie=cookie or None
    )
    # Async, on the server's own loop: a blocking socket in a worker thread
    # could wait on the very thread the WebSocket consumer needs.
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(request.encode())
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        head = raw.decode("latin-1")
        user = await whoami(reader, writer) if head.startswith("HTTP/1.1 101") else None
        # A masked close frame (opcode 8, empty payload) so the server sees a clean goodbye.
        writer.write(bytes([0x88, 0x80]) + os.urandom(4))
        await writer.drain()
    finally:
        writer.close()
    shown = request if not cookie else request.replace(f"Cookie: {cookie}\r\n", f"Cookie: {masked_cookie(cookie)}\r\n")
    return {
        "request": shown,
        "response": head,
        "request_bytes": len(request.encode()),
        "response_bytes": len(head.encode("latin-1")),
        "accept_expected": expected_accept(key),
        "accept_ok": f"Sec-WebSocket-Accept: {expected_accept(key)}".lower() in head.lower(),
        "negotiated": negotiated(head),
        "cookie_sent": bool(cookie),
        "user": user,
    }
