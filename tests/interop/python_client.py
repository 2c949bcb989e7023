"""An independent WebSocket client of /ws/quotes/ on Python's ``websockets``, for tests/test_independent_clients.py.

It shares no code with the server (ticker/) or with the suite's Follower (tests/clients.py), and does what
tests/interop/node_client.mjs does on Node's ``ws``: offers permessage-deflate (websockets' default), asks
for the delta format (subprotocol ticker.v2.json), subscribes to every symbol and decodes every frame into
a book of whole quotes: deltas merged onto the quote held at seq - 1, seq continuity checked, change and
change_pct derived in integer cents and checked against every whole quote. ``summary()`` has the same
shape as the Node client's summary line.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import sys
from collections import deque
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

SUBPROTOCOL = "ticker.v2.json"
FIELDS = (
    "symbol",
    "price",
    "prev_close",
    "change",
    "change_pct",
    "open",
    "high",
    "low",
    "volume",
    "seq",
    "ts",
    "halted",
)
DERIVED = ("change", "change_pct")
MONEY = ("price", "prev_close", "open", "high", "low")
MAX_ERRORS = 50  # kept in the summary (all are counted)


class CountingConnection(ClientConnection):
    """websockets' client connection, counting the bytes read from the socket (the handshake's included)."""

    bytes_read = 0

    def data_received(self, data: bytes) -> None:
        self.bytes_read += len(data)
        super().data_received(data)


def derived_pct(change: int, prev_close: int) -> int:
    """change_pct in hundredths of a percent: change * 10000 / prev_close rounded half to even, in integers."""
    if prev_close == 0:
        return 0
    negative = (change < 0) != (prev_close < 0)
    q, r = divmod(abs(change) * 10000, abs(prev_close))
    if 2 * r > abs(prev_close) or (2 * r == abs(prev_close) and q % 2):
        q += 1
    return -q if negative else q


class PythonClient:
    def __init__(self, base: str, history: int = 40):
        self.url = base.replace("http", "ws", 1) + "/ws/quotes/"
        self.origin = base
        self.history = history
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()
        self.book: dict[str, dict[str, Any]] = {}  # symbol -> the whole quote held, in cents
        self.histories: dict[str, deque] = {}  # symbol -> (seq, price in cents) of its last quotes
        self.frames = 0
        self.frame_types: dict[str, int] = {}
        self.quotes = self.snapshot_quotes = self.deltas = self.whole_in_quotes = self.redundant_fields = 0
        self.gaps: list[tuple[str, int | None, int]] = []
        self.errors: list[str] = []
        self.error_count = 0
        self.decoded_bytes = 0
        self.compressed_messages = self.compressed_bytes = 0
        self.uncompressed_large = 0  # frames of 256 bytes or more that came without RSV1 (informational)
        self.steps: list[int] = []
        self.feeds: dict[str, int] = {}
        self.extensions: str | None = None
        self.negotiated: list[str] = []
        self.protocol: str | None = None
        self.closed: dict | None = None
        self.socket_bytes_read = 0
        self._last_step: int | None = None

    # -- the connection ------------------------------------------------

    async def run(self) -> None:
        """Follow until ``stop`` is set or the server closes."""
        async with websockets.connect(
            self.url,
            origin=self.origin,
            subprotocols=[SUBPROTOCOL],
            create_connection=CountingConnection,
            proxy=None,
            max_size=16 * 2**20,
        ) as ws:
            self.extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            self.protocol = ws.subprotocol
            self.negotiated = [type(extension).__name__ for extension in ws.protocol.extensions]
            for extension in ws.protocol.extensions:
                self._count_compressed(extension)
            await ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
            stop = asyncio.ensure_future(self.stop.wait())
            try:
                while True:
                    receive = asyncio.ensure_future(ws.recv())
                    await asyncio.wait([receive, stop], return_when=asyncio.FIRST_COMPLETED)
                    if not receive.done():
                        receive.cancel()
                        break
                    try:
                        message = receive.result()
                    except websockets.ConnectionClosed as closed:
                        self.closed = {"code": closed.rcvd.code if closed.rcvd else None}
                        break
                    self.take(message)
            finally:
                stop.cancel()
                self.socket_bytes_read = ws.bytes_read
        if self.closed is None:
            self.closed = {"code": ws.close_code, "by": "client"}

    def _count_compressed(self, extension) -> None:
        """Count the frames that arrive with RSV1 set (compressed), where websockets' extension decodes them."""
        decode = extension.decode

        def counting(frame, **kwargs):
            if frame.rsv1:
                self.compressed_bytes += len(frame.data)
                if frame.fin:
                    self.compressed_messages += 1
            elif frame.opcode.name == "TEXT" and len(frame.data) >= 256:
                self.uncompressed_large += 1
            return decode(frame, **kwargs)

        extension.decode = counting

    # -- decoding --------------------------------------------------------

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def cents(self, value: Any, what: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(f"{what}: not a number: {value!r}")
            return None
        c = round(value * 100)
        if abs(value * 100 - c) > 1e-6:
            self.error(f"{what}: more than two decimals: {value}")
        return c

    def take(self, message: str | bytes) -> None:
        self.frames += 1
        if isinstance(message, bytes):
            self.decoded_bytes += len(message)
            self.error(f"a binary frame of {len(message)} bytes")
            return
        self.decoded_bytes += len(message.encode())
        try:
            frame = json.loads(message)
        except ValueError as exc:
            self.error(f"frame {self.frames} does not decode: {exc}: {message[:200]}")
            return
        kind = frame.get("type")
        self.frame_types[kind] = self.frame_types.get(kind, 0) + 1
        if kind == "snapshot":
            self.on_snapshot(frame)
            self.ready.set()
        elif kind == "quotes":
            self.on_quotes(frame)
        elif kind == "heartbeat":
            self.feeds[frame["feed"]] = self.feeds.get(frame["feed"], 0) + 1
        else:
            self.error(f"unexpected frame: {message[:200]}")

    def whole(self, raw: dict, where: str) -> dict:
        quote = {key: raw[key] for key in ("symbol", "seq", "ts", "volume", "halted")}
        for key in MONEY:
            quote[key] = self.cents(raw[key], f"{where} {key}")
        change, pct = self.cents(raw["change"], f"{where} change"), self.cents(raw["change_pct"], f"{where} change_pct")
        self.derive(quote)
        if change != quote["change"]:
            self.error(f"{where}: change {raw['change']}, derived {quote['change'] / 100}")
        if pct != quote["change_pct"]:
            self.error(f"{where}: change_pct {raw['change_pct']}, derived {quote['change_pct'] / 100}")
        return quote

    @staticmethod
    def derive(quote: dict) -> None:
        quote["change"] = quote["price"] - quote["prev_close"]
        quote["change_pct"] = derived_pct(quote["change"], quote["prev_close"])

    def check(self, quote: dict, where: str) -> None:
        for key in ("seq", "volume", "ts"):
            if isinstance(quote[key], bool) or not isinstance(quote[key], int) or quote[key] < 0:
                self.error(f"{where}: {key} {quote[key]!r}")
        if not isinstance(quote["halted"], bool):
            self.error(f"{where}: halted {quote['halted']!r}")
        if not quote["low"] <= quote["price"] <= quote["high"]:
            self.error(f"{where}: price {quote['price']} outside low {quote['low']} .. high {quote['high']} (cents)")

    def hold(self, quote: dict) -> None:
        self.book[quote["symbol"]] = quote
        history = self.histories.setdefault(quote["symbol"], deque(maxlen=self.history))
        history.append((quote["seq"], quote["price"]))

    def on_snapshot(self, frame: dict) -> None:
        for raw in frame["quotes"]:
            where = f"snapshot step {frame['step']} {raw.get('symbol')} seq {raw.get('seq')}"
            self.snapshot_quotes += 1
            if not all(key in raw for key in FIELDS):
                self.error(f"{where}: not a whole quote: {raw}")
                continue
            held = self.book.get(raw["symbol"])
            if held and raw["seq"] < held["seq"]:
                self.error(f"{where}: goes back from seq {held['seq']}")
            quote = self.whole(raw, where)
            self.check(quote, where)
            self.hold(quote)

    def on_quotes(self, frame: dict) -> None:
        if frame.get("conflated"):
            self.error(f"quotes step {frame['step']}: conflated, but no max_rate was asked for")
        if self._last_step is not None and frame["step"] <= self._last_step:
            self.error(f"quotes step {frame['step']} after step {self._last_step}")
        self._last_step = frame["step"]
        self.steps.append(frame["step"])
        for raw in frame["quotes"]:
            where = f"quotes step {frame['step']} {raw.get('symbol')} seq {raw.get('seq')}"
            held = self.book.get(raw["symbol"])
            follows = held is not None and raw["seq"] == held["seq"] + 1
            if not follows:
                self.gaps.append((raw["symbol"], held and held["seq"], raw["seq"]))
            for key in raw.keys() - set(FIELDS):
                self.error(f"{where}: unknown field {key}")
            if all(key in raw for key in FIELDS):
                self.whole_in_quotes += 1
                quote = self.whole(raw, where)
            else:
                self.deltas += 1
                for key in DERIVED:
                    if key in raw:
                        self.error(f"{where}: a delta carries {key}")
                if not follows:
                    self.error(f"{where}: a delta for a symbol not held at seq - 1 (held {held and held['seq']})")
                    continue
                quote = dict(held, seq=raw["seq"])
                for key, value in raw.items():
                    if key in ("symbol", "seq", *DERIVED):
                        continue
                    value = self.cents(value, f"{where} {key}") if key in MONEY else value
                    if value == held[key] and type(value) is type(held[key]):
                        self.redundant_fields += 1
                    quote[key] = value
                self.derive(quote)
            self.check(quote, where)
            self.hold(quote)
            self.quotes += 1

    # -- the summary -----------------------------------------------------

    def summary(self) -> dict:
        """The Node client's summary shape (tests/interop/node_client.mjs), the book in dollars."""
        book = {}
        for symbol in sorted(self.book):
            quote = dict(self.book[symbol])
            for key in (*MONEY, *DERIVED):
                quote[key] = quote[key] / 100
            quote["history"] = {str(seq): price / 100 for seq, price in self.histories[symbol]}
            book[symbol] = quote
        return {
            "event": "summary",
            "client": f"python {sys.version.split()[0]}, websockets {importlib.metadata.version('websockets')}",
            "extensions": self.extensions,
            "negotiated": self.negotiated,
            "protocol": self.protocol,
            "closed": self.closed,
            "socketBytesRead": self.socket_bytes_read,
            "frames": self.frames,
            "frameTypes": self.frame_types,
            "quotes": self.quotes,
            "snapshotQuotes": self.snapshot_quotes,
            "deltas": self.deltas,
            "wholeInQuotes": self.whole_in_quotes,
            "redundantFields": self.redundant_fields,
            "gaps": [list(gap) for gap in self.gaps],
            "errors": self.errors,
            "errorCount": self.error_count,
            "decodedBytes": self.decoded_bytes,
            "compressedMessages": self.compressed_messages,
            "compressedBytes": self.compressed_bytes,
            "uncompressedLarge": self.uncompressed_large,
            "steps": self.steps,
            "feeds": self.feeds,
            "book": book,
        }
