"""permessage-deflate (RFC 7692) and the delta format on a real daphne: what a client that offers them gets.

A raw client (asyncio streams, RFC 6455 by hand, as bench/codec.py reads frames) sees what no library shows:
the handshake's headers as sent, and the RSV1 bit of every frame. Real processes: daphne, run_market, Redis.
"""

from __future__ import annotations

import asyncio
import json
import zlib

import pytest

from bench.codec import client_frame, frame_at
from ticker.edge import handshake

from .clients import get_json, sample, samples
from .processes import site_fixture

pytestmark = [pytest.mark.processes, pytest.mark.asyncio]

ALWAYS_OPEN = {"MARKET_SESSION_CLOSED_HOURS": "0"}  # a closed market does not move
DEFLATE = "permessage-deflate; client_max_window_bits"


site = site_fixture(scope="module", market=True, env=ALWAYS_OPEN)
site_without_compression = site_fixture(
    scope="module", market=True, env={**ALWAYS_OPEN, "TICKER_WS_COMPRESSION": "off"}, name="site_without_compression"
)


class RawSocket:
    """One WebSocket, read frame by frame with its RSV1 bit; compressed payloads inflated as RFC 7692 7.2.2 says."""

    def __init__(self, reader, writer, headers: dict[str, str], window_bits: int = 15):
        self.reader, self.writer, self.headers = reader, writer, headers
        self.window_bits = window_bits
        self.buffer = bytearray()

    @classmethod
    async def open(cls, site, *extra: str) -> RawSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        request = handshake.upgrade_request(
            path="/ws/quotes/", http_host=f"127.0.0.1:{site.port}", origin=site.base, key=handshake.new_key()
        )
        writer.write(request.replace("\r\n\r\n", "".join(f"\r\n{line}" for line in extra) + "\r\n\r\n").encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
        assert head.startswith("HTTP/1.1 101"), head
        headers = {}
        for line in head.split("\r\n")[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return cls(reader, writer, headers)

    async def send(self, message: dict) -> None:
        self.writer.write(client_frame(json.dumps(message).encode()))
        await self.writer.drain()

    async def frame(self) -> tuple[bool, int, dict]:
        """The next text frame: (compressed, bytes on the wire, its JSON)."""
        while True:
            found = frame_at(self.buffer, 0, len(self.buffer))
            if found is not None:
                opcode, start, stop, _ = found
                compressed = bool(self.buffer[0] & 0x40)
                payload = bytes(self.buffer[start:stop])
                del self.buffer[:stop]
                if opcode != 0x1:
                    continue  # pings: daphne's keep-alive, not data
                if compressed:
                    payload = zlib.decompressobj(-self.window_bits).decompress(payload + b"\x00\x00\xff\xff")
                return compressed, stop, json.loads(payload)
            chunk = await asyncio.wait_for(self.reader.read(65536), 10)
            assert chunk, "the server closed the connection"
            self.buffer += chunk

    async def frames_of(self, kind: str, count: int) -> list[tuple[bool, int, dict]]:
        """The next ``count`` frames of type ``kind`` (others skipped), within a generous 20 s (a loaded machine)."""

        async def collect():
            found = []
            while len(found) < count:
                frame = await self.frame()
                if frame[2]["type"] == kind:
                    found.append(frame)
            return found

        return await asyncio.wait_for(collect(), 20)

    def close(self) -> None:
        self.writer.close()


async def test_an_offer_is_answered_without_server_context_takeover_and_big_frames_come_compressed(site):
    ws = await RawSocket.open(site, f"Sec-WebSocket-Extensions: {DEFLATE}")
    try:
        assert ws.headers["sec-websocket-extensions"] == (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=9; server_no_context_takeover"
        )
        assert "sec-websocket-protocol" not in ws.headers  # not asked for: whole quotes
        await ws.send({"action": "subscribe", "symbols": ["*"]})
        (compressed, wire, snapshot), *_ = await ws.frames_of("snapshot", 1)
        assert compressed and wire < len(json.dumps(snapshot)) / 2
        assert len(snapshot["quotes"]) == 30 and {"change", "change_pct", "prev_close"} <= set(snapshot["quotes"][0])
        quotes = await ws.frames_of("quotes", 4)
        assert all(compressed for compressed, _, _ in quotes)
        assert all(set(q) == set(snapshot["quotes"][0]) for _, _, frame in quotes for q in frame["quotes"])
        # A pong is far under the threshold (TICKER_WS_COMPRESS_MIN_BYTES): sent as it is, RSV1 clear.
        await ws.send({"action": "ping"})
        (compressed, _, pong), *_ = await ws.frames_of("pong", 1)
        assert not compressed and "ts" in pong
    finally:
        ws.close()


async def test_the_delta_format_sends_what_changed_and_applies_onto_the_snapshot(site):
    ws = await RawSocket.open(site, f"Sec-WebSocket-Extensions: {DEFLATE}", "Sec-WebSocket-Protocol: ticker.v2.json")
    try:
        assert ws.headers["sec-websocket-protocol"] == "ticker.v2.json"
        await ws.send({"action": "subscribe", "symbols": ["*"]})
        (_, _, snapshot), *_ = await ws.frames_of("snapshot", 1)
        book = {q["symbol"]: q for q in snapshot["quotes"]}
        partial = 0
        for _, _, frame in await ws.frames_of("quotes", 12):
            for quote in frame["quotes"]:
                held = book[quote["symbol"]]
                assert quote["seq"] == held["seq"] + 1, "every step continues the seq the client holds"
                assert "change" not in quote or len(quote) == len(held), "derived fields only in whole quotes"
                partial += len(quote) < len(held)
                merged = held | quote
                book[quote["symbol"]] = merged
        assert partial > 100, "most quotes of 12 steps of 30 symbols are deltas"
        # What the client made of the deltas is what the API says, at the same seq.
        api = {q["symbol"]: q for q in (await asyncio.to_thread(get_json, site.base, "/api/quotes/"))["quotes"]}
        same = [s for s in book if api[s]["seq"] == book[s]["seq"]]
        for symbol in same:
            fields = {k: v for k, v in api[symbol].items() if k not in ("change", "change_pct")}
            assert {k: book[symbol][k] for k in fields} == fields
    finally:
        ws.close()


async def test_a_client_that_asks_for_a_smaller_server_window_still_gets_frames_it_can_inflate(site):
    """Our shared frames use a 4 KiB window; a client allowing only 1 KiB gets autobahn's per-connection deflate."""
    ws = await RawSocket.open(site, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10")
    ws.window_bits = 10
    try:
        assert "server_max_window_bits=10" in ws.headers["sec-websocket-extensions"]
        await ws.send({"action": "subscribe", "symbols": ["*"]})
        await ws.frames_of("snapshot", 1)
        frames = await ws.frames_of("quotes", 4)
        assert all(compressed and frame["quotes"] for compressed, _, frame in frames)
    finally:
        ws.close()


async def test_without_an_offer_or_with_compression_off_nothing_is_compressed(site, site_without_compression):
    for target, extra in ((site, ()), (site_without_compression, (f"Sec-WebSocket-Extensions: {DEFLATE}",))):
        ws = await RawSocket.open(target, *extra)
        try:
            assert "sec-websocket-extensions" not in ws.headers
            await ws.send({"action": "subscribe", "symbols": ["*"]})
            frames = await ws.frames_of("snapshot", 1) + await ws.frames_of("quotes", 3)
            assert not any(compressed for compressed, _, _ in frames)
        finally:
            ws.close()


async def test_metrics_count_what_connections_negotiated_and_what_compression_saved(site):
    ws = await RawSocket.open(site, f"Sec-WebSocket-Extensions: {DEFLATE}", "Sec-WebSocket-Protocol: ticker.v2.json")
    try:
        await ws.send({"action": "subscribe", "symbols": ["*"]})
        await ws.frames_of("quotes", 2)
    finally:
        ws.close()
    found = await asyncio.to_thread(samples, site.base + "/metrics")
    assert sample(found, "ticker_websocket_negotiated_total", compression="shared", format="delta") >= 1
    assert sample(found, "ticker_compressed_frames_total") >= 3  # the snapshot and two steps, at least
    raw, deflated = (
        sample(found, "ticker_compressed_bytes_total", form="raw"),
        sample(found, "ticker_compressed_bytes_total", form="deflated"),
    )
    assert 0 < deflated < raw / 2


async def test_a_compressed_client_message_is_inflated_no_further_than_128_kib(site):
    """2 KB on the wire that would inflate to 200 KB: the server stops at its inflate limit (128 KiB) and drops
    the connection (autobahn's way with an oversized message, as daphne's past 1 MiB: docs/protocol.md, "Limits").
    Under the limit, a compressed message over 16 KiB gets too_large as any other (tests/test_limits.py)."""
    ws = await RawSocket.open(site, f"Sec-WebSocket-Extensions: {DEFLATE}")
    try:
        await ws.send({"action": "ping"})  # an ordinary (uncompressed) message still works
        await ws.frames_of("pong", 1)
        bomb = b'{"action": "ping", "pad": "' + b" " * 200_000 + b'"}'
        compressor = zlib.compressobj(9, zlib.DEFLATED, -9)  # the server asked for client_max_window_bits=9
        data = (compressor.compress(bomb) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        assert len(data) < 2_000
        frame = bytearray(client_frame(data))
        frame[0] |= 0x40  # RSV1: this message is compressed
        ws.writer.write(bytes(frame))
        await ws.writer.drain()

        async def until_dropped() -> list[str]:
            """The types of the frames that came before the server ended the connection."""
            seen = []
            try:
                while True:
                    seen.append((await ws.frame())[2]["type"])
            except (AssertionError, ConnectionResetError):  # the server closed: EOF or a reset
                return seen

        # Inflated in full, the message would have reached the consumer and got a too_large error frame.
        assert "error" not in await asyncio.wait_for(until_dropped(), 20)
    finally:
        ws.close()
