"""The client host and the Redis host's spy for tests/test_multihost.py, each run inside its own namespace.

``python -m tests.multihost_load clients HOST:PORT,... PER_TARGET``: PER_TARGET raw WebSocket clients on each web
host, subscribed to every symbol. Each client records what a user would notice: every change of the feed's state
its heartbeats announce, every snapshot, every seq gap a quotes frame leaves (bench/seq.py's follower), and every
silence of over a second between data frames. Each distinct frame is decoded once (a web process encodes a frame
once for all its clients), and its quotes checked against every quote seen before: the same symbol and seq with
another price is a reused seq, the same step and symbol with another seq or price a step published twice. Once
every client holds its snapshot it prints ``{"ready": ...}``; then it answers ``report SINCE`` on stdin with one
JSON line (what happened at or after wall time SINCE) and stops on ``exit``.

``python -m tests.multihost_load spy REDIS_URL PREFIX FILE``: a member of the site's ``quotes`` group that writes
every batch the markets publish to FILE as a JSON line: arrival time, step, the leader's lease token and quotes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.codec import CLOSE, PING, PONG, TEXT, client_frame, frame_at, upgrade_request
from bench.seq import SeqFollower

SUBSCRIBE = client_frame(b'{"action":"subscribe","symbols":["*"]}')
SILENCE_S = 1.0  # a pause between data frames longer than this is recorded (the market steps every 250 ms)
CONNECTS_AT_ONCE = 100


class Ledger:
    """Every quote any client saw, by (symbol, seq) and by (step, symbol): a second, different one is a fault."""

    def __init__(self) -> None:
        self.by_seq: dict[tuple[str, int], float] = {}
        self.by_step: dict[tuple[int, str], tuple[int, float]] = {}
        self.reused: list = []
        self.twice: list = []
        self.decoded: dict[bytes, dict] = {}

    def decode(self, payload: bytes) -> dict:
        frame = self.decoded.get(payload)
        if frame is None:
            if len(self.decoded) > 512:
                self.decoded.clear()
            frame = self.decoded[payload] = json.loads(payload)
            self.check(frame)
        return frame

    def check(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind not in ("quotes", "snapshot"):
            return
        for quote in frame["quotes"]:
            symbol, seq, price = quote["symbol"], quote["seq"], quote["price"]
            held = self.by_seq.setdefault((symbol, seq), price)
            if held != price:
                self.reused.append([symbol, seq, held, price])
            if kind == "quotes":
                key = (frame["step"], symbol)
                held_step = self.by_step.setdefault(key, (seq, price))
                if held_step != (seq, price):
                    self.twice.append([frame["step"], symbol, list(held_step), [seq, price]])


class Client(asyncio.Protocol):
    """One dashboard's WebSocket, with the record a user's view of the feed would give."""

    def __init__(self, ledger: Ledger, target: int, netloc: str):
        self.ledger, self.target, self.netloc = ledger, target, netloc
        self.buffer = bytearray()
        self.open = False
        self.transport = None
        self.ready = asyncio.get_running_loop().create_future()
        self.follower = SeqFollower()
        self.state = "live"
        self.feed: list[tuple[float, str]] = []  # (when, state) at each change the heartbeats announce
        self.snapshots: list[float] = []
        self.gaps: list[tuple[float, str, int, int]] = []
        self.silences: list[tuple[float, float]] = []
        self.last_data = 0.0
        self.frames = 0
        self.closed: tuple[float, int | None] | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(upgrade_request(self.netloc))

    def connection_lost(self, exc) -> None:
        if self.closed is None:
            self.closed = (time.time(), None)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the snapshot: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(self.buffer[: self.buffer.find(b"\r\n")]).decode()))
                self.transport.close()
                return
            self.open = True
            del self.buffer[: end + 4]
            self.transport.write(SUBSCRIBE)
        pos, n = 0, len(self.buffer)
        while (frame := frame_at(self.buffer, pos, n)) is not None:
            opcode, start, stop, _ = frame
            if opcode == TEXT:
                self.text(bytes(self.buffer[start:stop]))
            elif opcode == PING:
                self.transport.write(client_frame(bytes(self.buffer[start:stop]), opcode=PONG))
            elif opcode == CLOSE:
                code = int.from_bytes(self.buffer[start : start + 2], "big") if stop - start >= 2 else None
                self.closed = (time.time(), code)
                self.transport.close()
                return
            pos = stop
        del self.buffer[:pos]

    def text(self, payload: bytes) -> None:
        now = time.time()
        frame = self.ledger.decode(payload)
        kind = frame["type"]
        if kind == "heartbeat":
            if frame["feed"] != self.state:
                self.state = frame["feed"]
                self.feed.append((now, self.state))
            return
        if kind not in ("quotes", "snapshot"):
            return
        self.frames += 1
        if self.last_data and now - self.last_data > SILENCE_S:
            self.silences.append((self.last_data, now))
        self.last_data = now
        before = len(self.follower.gaps)
        self.follower.take(frame)
        for symbol, held, got in self.follower.gaps[before:]:
            self.gaps.append((now, symbol, held, got))
        if kind == "snapshot":
            self.snapshots.append(now)
            if not self.ready.done():
                self.ready.set_result(None)

    def report(self, since: float) -> dict:
        return {
            "target": self.target,
            "feed": [entry for entry in self.feed if entry[0] >= since],
            "state": self.state,
            "snapshots": [at for at in self.snapshots if at >= since],
            "gaps": [gap for gap in self.gaps if gap[0] >= since],
            "silences": [pause for pause in self.silences if pause[1] >= since],
            "last_data": self.last_data,
            "frames": self.frames,
            "steps_back": len(self.follower.steps_back),
            "backwards": len(self.follower.backwards),
            "closed": self.closed,
        }


async def clients(targets: list[str], per_target: int) -> None:
    loop = asyncio.get_running_loop()
    ledger = Ledger()
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    everyone: list[Client] = []
    errors: list[str] = []

    async def connect(target: int, netloc: str) -> None:
        host, port = netloc.rsplit(":", 1)
        async with gate:
            client = Client(ledger, target, netloc)
            try:
                await loop.create_connection(lambda: client, host, int(port))
                await asyncio.wait_for(asyncio.shield(client.ready), 60)
            except (OSError, ConnectionError, TimeoutError) as exc:
                errors.append(f"{netloc}: {type(exc).__name__}: {exc}")
            everyone.append(client)

    await asyncio.gather(*(connect(i, netloc) for i, netloc in enumerate(targets) for _ in range(per_target)))
    print(json.dumps({"ready": len(everyone) - len(errors), "errors": errors[:10]}), flush=True)
    commands: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: commands.put_nowait(sys.stdin.readline()))
    while True:
        command = (await commands.get()).split()
        if not command or command[0] == "exit":
            break
        since = float(command[1]) if len(command) > 1 else 0.0
        answer = {
            "clients": [client.report(since) for client in everyone],
            "reused": ledger.reused[:20],
            "reused_count": len(ledger.reused),
            "twice": ledger.twice[:20],
            "twice_count": len(ledger.twice),
            "distinct_quotes": len(ledger.by_seq),
        }
        print(json.dumps(answer), flush=True)
    for client in everyone:
        if client.transport is not None:
            client.transport.close()


async def spy(url: str, prefix: str, out) -> None:
    from channels_redis.core import RedisChannelLayer

    # Production's timeouts (ticker/runtime/redis_conn.py): redis-py's default read timeout equals channels_redis's
    # 5 s blocking pop, so a quiet group (the market not yet leading) would end the spy.
    layer = RedisChannelLayer(hosts=[{"address": url, "socket_timeout": 7, "socket_connect_timeout": 2}], prefix=prefix)
    channel = await layer.new_channel()
    await layer.group_add("quotes", channel)
    while True:
        try:
            message = await layer.receive(channel)
        except Exception as exc:  # the Redis host's own spy sees no partition; still, never die of one error
            print(f"spy: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            await asyncio.sleep(0.2)
            continue
        if message.get("type") != "quote.batch":
            continue
        quotes = [[q["symbol"], q["seq"], q["price"]] for q in message.get("quotes", ())]
        record = {"at": time.time(), "step": message["step"], "token": message.get("token"), "quotes": quotes}
        out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "clients":
        asyncio.run(clients(rest[0].split(","), int(rest[1])))
    else:
        url, prefix, path = rest
        with open(path, "a", buffering=1) as spied:  # a line at a time: the test reads it while the spy runs
            asyncio.run(spy(url, prefix, spied))
