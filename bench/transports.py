"""Transport benchmark: N raw-socket clients per transport, every byte counted.

Used by ``python manage.py bench_transports``. The clients speak HTTP/1.1 and
RFC 6455 themselves over asyncio streams, so the bytes counted are exactly the
TCP payload that crosses the client sockets (request and response headers,
WebSocket frame headers, chunked-encoding lines, bodies). TCP/IP header bytes
are estimated from the kernel's segment counters (/proc/net/snmp) and are
labelled as an estimate. Server CPU time is read from /proc/<pid>/stat.

WebSocket is measured in four variants: whole quotes or the delta format
(subprotocol ``ticker.v2.json``: each quote carries only the fields that
changed), each without or with permessage-deflate (RFC 7692) offered. The
socket bytes are counted as sent (compressed); the application's payload,
the decompressed JSON, is counted when the stashed frames are decoded after
the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

from ticker.market import prices as market

from .codec import CLOSE, PING, PONG, TEXT, client_frame, inflate, take_message, upgrade_request
from .proc import process_cpu_s, tcp_segments
from .seq import SeqFollower
from .stats import latency_summary

WEBSOCKETS = ("websocket", "websocket-deflate", "websocket-delta", "websocket-delta-deflate")
TRANSPORTS = (*WEBSOCKETS, "sse", "longpoll", "polling")
# IPv4 (20) + TCP (20) + the timestamp option Linux sends on every segment (12).
TCP_IP_HEADER_BYTES = 52


@dataclass
class Tally:
    """What one transport's clients saw, summed over all of them."""

    updates: int = 0
    lost: int = 0
    conflated: int = 0  # long-poll: updates an answer spanning several steps left out, as the protocol says it may
    requests: int = 0
    payload_bytes: int = 0  # JSON the application needed (decompressed)
    wire_payload_bytes: int = 0  # that payload as it crossed the socket (compressed, where it was)
    wire_bytes: int = 0  # everything read from and written to the sockets
    compressed_frames: int = 0  # WebSocket frames with RSV1 set (permessage-deflate)
    bad_deltas: int = 0  # delta quotes that did not continue a held quote (seq + 1): unusable, counted lost
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connected: int = 0
    expected: int = 0
    frames: int = 0  # answers or push frames received, counted or not
    books: list = field(default_factory=list)
    settled: int = 0  # clients connected or failed
    all_settled: asyncio.Event = field(default_factory=asyncio.Event)
    answered: dict = field(default_factory=dict)  # the first 101's extension and subprotocol headers
    breaks: list[dict] = field(default_factory=list)  # the first few counted frames that skipped updates

    def connect(self) -> None:
        self.connected += 1
        self.settle()

    def fail(self, error: str) -> None:
        self.errors.append(error)
        self.settle()

    def settle(self) -> None:
        self.settled += 1
        if self.settled >= self.expected:
            self.all_settled.set()


class Counted:
    """An asyncio stream pair that counts every byte read and written."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tally: Tally):
        self.reader, self.writer, self.tally = reader, writer, tally

    @classmethod
    async def open(cls, host: str, port: int, tally: Tally) -> Counted:
        reader, writer = await asyncio.open_connection(host, port, limit=2**22)
        return cls(reader, writer, tally)

    async def write(self, data: bytes) -> None:
        self.tally.wire_bytes += len(data)
        self.writer.write(data)
        await self.writer.drain()

    async def readline(self) -> bytes:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        self.tally.wire_bytes += len(line)
        return line

    async def readexactly(self, n: int) -> bytes:
        data = await self.reader.readexactly(n)
        self.tally.wire_bytes += n
        return data

    async def read_head(self) -> tuple[int, dict[str, str]]:
        status = int((await self.readline()).split()[1])
        headers = {}
        while (line := await self.readline()) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def read_response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers = await self.read_head()
        body = await self.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    def close(self) -> None:
        self.writer.close()


class Book:
    """One client's count of delivered and lost updates (by seq, ``bench.seq``) and their latency.

    Latency is taken when the bytes reach the client socket. Push clients only
    stash each frame (as it came: compressed or not) with its arrival time
    while the run lasts and decompress and decode it afterwards (``replay``),
    so one Python process reading hundreds of sockets does not add its own
    decoding to the latency of the clients it reads last, nor take CPU from
    the server while it is being measured.

    With ``delta`` (the ticker.v2.json format) it also keeps each symbol's whole
    quote and applies every delta to it, as a browser would: a delta must
    continue the held quote (its seq is the held seq + 1), or it cannot be
    applied and is counted as lost (``Tally.bad_deltas``).
    """

    def __init__(self, tally: Tally, counting: asyncio.Event, *, delta: bool = False):
        self.tally, self.counting, self.delta = tally, counting, delta
        self.follower = SeqFollower()
        self.held: dict[str, dict] = {}  # delta format: each symbol's whole quote as rebuilt so far
        self.stashed: list[tuple[float, bool, bool, bytes]] = []
        tally.books.append(self)

    def stash(self, payload: bytes, compressed: bool = False) -> None:
        """Keep one push frame (JSON, deflated if ``compressed``) with its arrival time, for ``replay``."""
        self.stashed.append((time.time() * 1000, self.counting.is_set(), compressed, payload))

    def replay(self) -> None:
        """Decompress and decode the stashed frames in arrival order and count them."""
        stashed, self.stashed = self.stashed, []
        for at, counted, compressed, payload in stashed:
            data = inflate(payload) if compressed else payload
            if counted and compressed:  # uncompressed frames were counted on arrival
                self.tally.payload_bytes += len(data)
            frame = json.loads(data)
            if frame.get("type") in ("snapshot", "quotes"):
                self.take(frame["quotes"], snapshot=frame["type"] == "snapshot", at=at, counted=counted)

    def take(self, quotes: list[dict], *, snapshot: bool = False, at: float, counted: bool, spans: int = 1) -> None:
        """Count one frame's quotes; ``snapshot``: a full state (a snapshot, or every polling answer); ``spans``:
        the market steps a long-poll answer covers, of which it may carry each symbol's latest quote only
        (docs/protocol.md): up to ``spans - 1`` skipped seqs a symbol are conflation, not loss."""
        conflated = self.conflated(quotes, spans) if spans > 1 and not snapshot else 0
        bad = self.apply(quotes, snapshot) if self.delta else 0
        change = self.follower.snapshot(quotes) if snapshot else self.follower.quotes(quotes)
        if counted:
            lost = change.missing - conflated + bad
            self.tally.updates += len(change.moved)
            self.tally.lost += lost
            self.tally.conflated += conflated
            if lost and len(self.tally.breaks) < 5:
                self.tally.breaks.append(self.describe(quotes, snapshot, at, lost))
            self.tally.bad_deltas += bad
            # A symbol never quoted has ts 0 in a snapshot, and a delta may leave ts out: no latency to take.
            self.tally.latencies_ms += [at - quote["ts"] for quote in change.moved if quote.get("ts")]

    def conflated(self, quotes: list[dict], spans: int) -> int:
        """The seqs these quotes skip that ``spans`` steps account for (at most one change a symbol a step)."""
        held = self.follower.seq
        return sum(
            min(quote["seq"] - held[quote["symbol"]] - 1, spans - 1)
            for quote in quotes
            if quote["symbol"] in held and quote["seq"] > held[quote["symbol"]] + 1
        )

    def describe(self, quotes: list[dict], snapshot: bool, at: float, lost: int) -> dict:
        """One frame that skipped updates, for the report: what it was, when, and one symbol's jump."""
        first = quotes[0] if quotes else {}
        return {
            "frame": "snapshot" if snapshot else "quotes",
            "lost": lost,
            "at_ms": round(at),
            "ts_ms": first.get("ts"),
            "quotes": len(quotes),
            "first": {"symbol": first.get("symbol"), "seq": first.get("seq")},
        }

    def apply(self, quotes: list[dict], snapshot: bool) -> int:
        """Rebuild each symbol's whole quote from a frame of the delta format; the deltas that could not apply.

        Whole quotes (snapshots, rate-capped frames, a symbol the server held no previous quote of) carry the
        derived ``change``; deltas do not, and get it back from price and prev_close.
        """
        bad = 0
        for quote in quotes:
            symbol = quote["symbol"]
            if snapshot or "change" in quote:
                self.held[symbol] = dict(quote)
                continue
            held = self.held.get(symbol)
            if held is None or quote["seq"] != held["seq"] + 1:
                bad += 1
                self.held.pop(symbol, None)  # unusable until a whole quote comes
                continue
            held.update(quote)
            price, prev_close = held.get("price"), held.get("prev_close")
            if price is not None and prev_close is not None:
                # As the server works them out (docs/protocol.md, "The quote"): in cents, exactly.
                change = Decimal(str(price)) - Decimal(str(prev_close))
                held["change"] = float(change)
                held["change_pct"] = market.change_pct(change, Decimal(str(prev_close)))
        return bad


def _request(path: str, host: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n{extra}\r\n".encode()


async def polling_client(target, tally: Tally, counting, stop, *, interval: float) -> None:
    conn = await Counted.open(target.host, target.port, tally)
    book, etag = Book(tally, counting), None
    tally.connect()
    # Spread the clients over the interval, as real browsers would be.
    await asyncio.sleep(random.random() * interval)
    try:
        while not stop.is_set():
            started = time.monotonic()
            extra = f"If-None-Match: {etag}\r\n" if etag else ""
            await conn.write(_request("/api/quotes/" + target.query("?"), target.netloc, extra))
            tally.requests += counting.is_set()
            status, headers, body = await conn.read_response()
            at, counted = time.time() * 1000, counting.is_set()
            tally.frames += 1
            if status == 200:
                etag = headers.get("etag")
                if counted:
                    tally.payload_bytes += len(body)
                    tally.wire_payload_bytes += len(body)
                book.take(json.loads(body)["quotes"], snapshot=True, at=at, counted=counted)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
    finally:
        conn.close()


async def longpoll_client(target, tally: Tally, counting, stop, **_) -> None:
    conn = await Counted.open(target.host, target.port, tally)
    book = Book(tally, counting)
    status, _, body = await _send(conn, "/api/quotes/" + target.query("?"), target)
    data = json.loads(body)
    book.take(data["quotes"], snapshot=True, at=time.time() * 1000, counted=False)
    since = data["step"]
    tally.connect()
    try:
        while not stop.is_set():
            status, _, body = await _send(conn, f"/api/quotes/?since={since}&wait=25{target.query('&')}", target)
            at, counted = time.time() * 1000, counting.is_set()
            tally.requests += counted
            tally.frames += 1
            # Decoded at once: the next request needs the answer's step.
            data = json.loads(body)
            if data["quotes"] and counted:
                tally.payload_bytes += len(body)
                tally.wire_payload_bytes += len(body)
            book.take(data["quotes"], at=at, counted=counted, spans=data["step"] - since)
            since = data["step"]
    finally:
        conn.close()


async def _send(conn: Counted, path: str, target) -> tuple[int, dict, bytes]:
    await conn.write(_request(path, target.netloc))
    return await conn.read_response()


async def sse_client(target, tally: Tally, counting, stop, **_) -> None:
    conn = await Counted.open(target.host, target.port, tally)
    book = Book(tally, counting)
    await conn.write(
        _request("/api/quotes/stream/" + target.query("?"), target.netloc, "Accept: text/event-stream\r\n")
    )
    status, headers = await conn.read_head()
    if status != 200:
        raise ConnectionError(f"SSE answered {status}")
    chunked = headers.get("transfer-encoding") == "chunked"
    tally.connect()
    buffer = b""
    try:
        while not stop.is_set():
            if chunked:
                size = int((await conn.readline()).strip(), 16)
                buffer += await conn.readexactly(size + 2)
                buffer = buffer[:-2] if buffer.endswith(b"\r\n") else buffer
            else:
                buffer += await conn.readline()
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if line.startswith(b"data: "):
                        data = line[6:]
                        if counting.is_set():
                            tally.payload_bytes += len(data)
                            tally.wire_payload_bytes += len(data)
                        tally.frames += 1
                        book.stash(data)
    finally:
        conn.close()


async def websocket_client(
    target, tally: Tally, counting, stop, *, deflate: bool = False, delta: bool = False, **_
) -> None:
    """``deflate``: offer permessage-deflate; ``delta``: ask for the delta format (ticker.v2.json)."""
    conn = await Counted.open(target.host, target.port, tally)
    book = Book(tally, counting, delta=delta)
    await conn.write(upgrade_request(target.netloc, "/ws/quotes/", target.origin, deflate=deflate, delta=delta))
    status, headers = await conn.read_head()
    if status != 101:
        raise ConnectionError(f"WebSocket handshake answered {status}")
    if not tally.answered:
        tally.answered = {
            "extensions": headers.get("sec-websocket-extensions"),
            "protocol": headers.get("sec-websocket-protocol"),
        }
    await conn.write(client_frame(json.dumps({"action": "subscribe", "symbols": list(target.symbols)}).encode()))
    tally.connect()
    buffer = bytearray()
    try:
        while not stop.is_set():
            # One read takes whatever the kernel holds, often several frames:
            # one wake-up per read, not three awaits per frame.
            chunk = await conn.reader.read(2**16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            tally.wire_bytes += len(chunk)
            buffer += chunk
            while (frame := take_message(buffer)) is not None:
                opcode, payload, compressed = frame
                if opcode == PING:  # answer, or daphne drops us after its ping timeout
                    await conn.write(client_frame(payload, opcode=PONG))
                elif opcode == TEXT:
                    if counting.is_set():
                        tally.wire_payload_bytes += len(payload)
                        tally.compressed_frames += compressed
                        if not compressed:  # a compressed one's JSON is counted when replayed
                            tally.payload_bytes += len(payload)
                    tally.frames += 1
                    book.stash(payload, compressed)
                elif opcode == CLOSE:
                    raise ConnectionError("server closed the WebSocket")
    finally:
        conn.close()


CLIENTS = {
    "websocket": websocket_client,
    "websocket-deflate": functools.partial(websocket_client, deflate=True),
    "websocket-delta": functools.partial(websocket_client, delta=True),
    "websocket-delta-deflate": functools.partial(websocket_client, deflate=True, delta=True),
    "sse": sse_client,
    "longpoll": longpoll_client,
    "polling": polling_client,
}


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    symbols: tuple[str, ...] = ("*",)

    def query(self, lead: str) -> str:
        """The ``symbols=`` parameter for HTTP transports ("" for all), after ``lead`` ("?" or "&")."""
        return "" if self.symbols == ("*",) else f"{lead}symbols={','.join(self.symbols)}"

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.netloc}"

    @classmethod
    def from_url(cls, url: str, symbols: tuple[str, ...] = ("*",)) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--url must look like http://HOST:PORT (got {url!r}); TLS is not supported here.")
        return cls(parts.hostname, parts.port or 80, symbols)


async def run_transport(
    transport: str,
    target: Target,
    *,
    clients: int,
    duration: float,
    poll_interval: float,
    server_pid: int | None,
    progress=None,
) -> dict:
    """Drive ``clients`` clients of one transport for ``duration`` seconds; return its figures."""
    tally = Tally(expected=clients)
    counting, stop = asyncio.Event(), asyncio.Event()
    client = CLIENTS[transport]

    async def guarded():
        try:
            await client(target, tally, counting, stop, interval=poll_interval)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if not stop.is_set():
                tally.fail(f"{type(exc).__name__}: {exc}")

    tasks = []
    for i in range(clients):
        tasks.append(asyncio.create_task(guarded()))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tally.all_settled.wait(), 60)
    await asyncio.sleep(max(2.0, poll_interval * 2))  # settle: snapshots in, first polls spread out
    cpu0, seg0, bytes0, wall0, own0 = (
        process_cpu_s(server_pid),
        tcp_segments(),
        tally.wire_bytes,
        time.monotonic(),
        time.process_time(),
    )
    counting.set()
    end = wall0 + duration
    while (now := time.monotonic()) < end:
        await asyncio.sleep(min(1.0, end - now))
        if progress:
            progress(transport, time.monotonic() - wall0, duration, tally.frames)
    counting.clear()
    cpu1, seg1, bytes1, wall1, own1 = (
        process_cpu_s(server_pid),
        tcp_segments(),
        tally.wire_bytes,
        time.monotonic(),
        time.process_time(),
    )
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for book in tally.books:
        book.replay()
    elapsed = wall1 - wall0
    updates = tally.updates
    server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    segments = None if seg0 is None or seg1 is None else seg1 - seg0

    def per_update(value):
        return round(value / updates, 1) if updates and value is not None else None

    return {
        "transport": transport,
        "clients": clients,
        "connected": tally.connected,
        "errors": sorted(set(tally.errors))[:3],
        "duration_s": round(elapsed, 2),
        "updates": updates,
        "updates_per_s": round(updates / elapsed, 1),
        "lost_updates": tally.lost,
        "lost_where": tally.breaks,
        "conflated_updates": tally.conflated,
        "latency_ms": latency_summary(tally.latencies_ms),
        "requests": tally.requests,
        "requests_per_s": round(tally.requests / elapsed, 1),
        "bytes_per_update": per_update(bytes1 - bytes0),
        "payload_bytes_per_update": per_update(tally.payload_bytes),
        "wire_payload_bytes_per_update": per_update(tally.wire_payload_bytes),
        "overhead_bytes_per_update": per_update(bytes1 - bytes0 - tally.wire_payload_bytes),
        "tcp_ip_bytes_per_update_est": per_update(segments * TCP_IP_HEADER_BYTES if segments is not None else None),
        "server_cpu_ms_per_1000_updates": (
            round(server_cpu * 1e6 / updates, 2) if server_cpu is not None and updates else None
        ),
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 2),
        "load_generator_cpu_s": round(own1 - own0, 2),
        "frames": tally.frames,
        "compressed_frames": tally.compressed_frames,
        "bad_deltas": tally.bad_deltas,
        "answered": tally.answered,
    }


# The targets for the compressed delta format, measured in one run (issue 14).
RATIO_TARGETS = (
    # (numerator, denominator, "le"/"ge", target)
    ("websocket-delta-deflate", "websocket", "le", 0.25),
    ("polling", "websocket-delta-deflate", "ge", 10.0),
)


def ratios(results: list[dict]) -> list[dict]:
    """Bytes per update of one transport over another's, on the sockets and with the TCP/IP estimate added."""
    rows = {r["transport"]: r for r in results}
    out = []
    for top, bottom, sense, target in RATIO_TARGETS:
        a, b = rows.get(top), rows.get(bottom)
        if not a or not b or not a["bytes_per_update"] or not b["bytes_per_update"]:
            continue
        socket = a["bytes_per_update"] / b["bytes_per_update"]
        tcp = None
        if a["tcp_ip_bytes_per_update_est"] is not None and b["tcp_ip_bytes_per_update_est"] is not None:
            tcp = (a["bytes_per_update"] + a["tcp_ip_bytes_per_update_est"]) / (
                b["bytes_per_update"] + b["tcp_ip_bytes_per_update_est"]
            )
        out.append(
            {
                "ratio": f"{top} / {bottom}",
                "bytes_per_update": round(socket, 3),
                "with_tcp_ip_est": None if tcp is None else round(tcp, 3),
                "target": f"{'<=' if sense == 'le' else '>='} {target:g}",
                "met": _met(socket, sense, target),
                "met_with_tcp_ip_est": _met(tcp, sense, target),
            }
        )
    return out


def _met(value: float | None, sense: str, target: float) -> bool | None:
    return None if value is None else (value <= target if sense == "le" else value >= target)
