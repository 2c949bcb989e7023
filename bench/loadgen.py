"""A lean WebSocket load generator for ``bench_fanout``: thousands of clients per process.

The fan-out benchmark measures the server's CPU per delivered frame, so the
clients must cost much less than the server they measure. Each client is a
bare ``asyncio.Protocol``: it parses RFC 6455 frame headers itself, and of
each quotes frame it reads only two numbers, the market step and the
market's timestamp, with a regular expression on the raw bytes (latency =
arrival - timestamp). Only a sample of the clients keep whole frames, which
are decoded as JSON after the measured window to check every symbol's
``seq`` for gaps. Every other client is checked for lost frames by the
steps it saw (see ``bench_fanout``).

With ``Target.deflate`` the clients offer permessage-deflate (RFC 7692), as
browsers do. A compressed frame (RSV1 set) is only counted, unless the client
is sampled: then it is kept as it came with its arrival time and inflated
after the window (its latency, step and seqs read then), so the generator
pays no decompression while the server is measured. Non-sampled clients thus
give no latency or steps for compressed frames: with compression the latency
and the by-step loss count come from the sampled clients alone.

Workers run in their own processes (``Workers``), each pinned to a core if
asked, and report their own CPU time so the benchmark can show the load
generator was not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import re
import time
from dataclasses import dataclass
from typing import NamedTuple

from ticker.runtime.gc_schedule import freeze_startup_objects

from .codec import CLOSE, PING, PONG, RSV1, TEXT, client_frame, frame_at, inflate, upgrade_request
from .seq import SeqFollower

STEP = re.compile(rb'"step": ?(\d+)')
TS = re.compile(rb'"ts": ?(\d+)')
ALERT_ID = re.compile(rb'"id": ?(\d+)')
# bench_alerts writes each alert's user in its note, "u<id>" (bench/alerts.py).
ALERT_USER = re.compile(rb'"note": ?"u(\d+)"')
HANDSHAKE_TIMEOUT_S = 30
CONNECTS_AT_ONCE = 100


@dataclass(frozen=True)
class Target:
    """Where the clients connect, and how they talk to that server."""

    host: str
    port: int
    path: str
    # "ticker" (sends a subscribe), "plain" (just listens), "socketio" (Engine.IO v4 over WebSocket).
    dialect: str = "ticker"
    # What a ticker client subscribes to: every client these symbols (empty: ["*"]), or, with
    # ``watchlist`` K, each client its own K distinct symbols drawn at random from ``symbols``.
    symbols: tuple[str, ...] = ()
    watchlist: int = 0
    deflate: bool = False  # offer permessage-deflate (a ticker server then compresses what it sends)
    # Signed-in clients (bench_alerts): client number n opens with the Cookie ``sessionid=users[n][1]`` and
    # expects the alerts of user ``users[n][0]``; past the list (or with none) a client is anonymous.
    users: tuple[tuple[int, str], ...] = ()

    def user(self, client: int) -> tuple[int, str] | None:
        """(user id, session key) of the ``client``-th client, or None: anonymous."""
        return self.users[client] if client < len(self.users) else None

    def subscribe(self, client: int) -> bytes:
        """The subscribe frame of the ``client``-th client (the same draw for the same client number)."""
        if not self.symbols:
            return SUBSCRIBE_ALL
        chosen = random.Random(client).sample(self.symbols, self.watchlist) if self.watchlist else self.symbols
        return client_frame(json.dumps({"action": "subscribe", "symbols": list(chosen)}).encode())


SUBSCRIBE_ALL = client_frame(b'{"action":"subscribe","symbols":["*"]}')


class Deflated(NamedTuple):
    """A sampled client's compressed frame, kept as it came until the window is over."""

    at_ms: float  # arrival, for its latency
    raw: bytes


class LeanClient(asyncio.BufferedProtocol):
    """One WebSocket client; counts quotes frames while its worker's window is open.

    A BufferedProtocol: the event loop reads straight into this client's own
    buffer (no new bytes object per read, no 256 KiB allocation per recv).
    """

    BUFFER = 64 * 1024

    def __init__(self, worker: Worker, target: Target, sampled: bool, number: int = 0):
        self.worker, self.target, self.sampled = worker, target, sampled
        self.number = number  # which client of the run: picks its watchlist
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray(self.BUFFER)
        self.view = memoryview(self.buffer)
        self.filled = 0
        self.open = False
        self.ready = asyncio.get_running_loop().create_future()
        self.steps: list[int] = []
        self.kept: list[bytes | Deflated] = []  # whole frames of a sampled client, decoded after the window
        self.frames = 0  # quotes frames (or compressed frames) this client got in the window
        self.deflated = False  # the server accepted permessage-deflate
        signed_in = target.user(number)
        self.user_id, self.cookie = signed_in if signed_in else (None, None)
        self.alert_ids: list[int] = []  # the alert id of each alert frame received (bench_alerts checks them)
        self.alert_latencies_ms: list[float] = []  # and its latency

    def connection_made(self, transport) -> None:
        self.transport = transport
        netloc = f"{self.target.host}:{self.target.port}"
        cookie = f"sessionid={self.cookie}" if self.cookie else None
        transport.write(upgrade_request(netloc, self.target.path, deflate=self.target.deflate, cookie=cookie))

    def connection_lost(self, exc) -> None:
        if self.open:
            self.worker.dropped += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during the handshake: {exc}"))

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.filled == len(self.buffer):  # one frame larger than the buffer: move to one twice the size
            grown = bytearray(2 * len(self.buffer))
            grown[: self.filled] = self.buffer
            self.buffer, self.view = grown, memoryview(grown)
        return self.view[self.filled :]

    def buffer_updated(self, nbytes: int) -> None:
        self.filled += nbytes
        data, n, pos = self.buffer, self.filled, 0
        if not self.open:
            end = data.find(b"\r\n\r\n", 0, n)
            if end < 0:
                return
            if not data.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(data[: data.find(b"\r\n")]).decode("latin-1")))
                self.transport.close()
                return
            self.open, pos = True, end + 4
            self.deflated = data.find(b"permessage-deflate", 0, end) >= 0
            if self.target.dialect == "ticker":
                self.transport.write(self.target.subscribe(self.number))
                self.ready.set_result(None)
            elif self.target.dialect == "plain":
                self.ready.set_result(None)
        worker = self.worker
        while (frame := frame_at(data, pos, n)) is not None:
            opcode, start, end, _ = frame  # a server never masks (RFC 6455 5.1)
            if opcode == TEXT and data[pos] & RSV1:
                self.compressed(worker, data, start, end)
            elif opcode == TEXT:
                self.text(worker, data, start, end)
            elif opcode == PING:  # answer it, or the server drops us
                self.transport.write(client_frame(bytes(data[start:end]), opcode=PONG))
            elif opcode == CLOSE:
                self.transport.close()
                return
            pos = end
        if pos:  # keep the unfinished frame at the front
            data[: n - pos] = data[pos:n]
            self.filled = n - pos

    def text(self, worker: Worker, data: bytes, start: int, end: int) -> None:
        if self.target.dialect == "socketio":
            kind = data[start : start + 2]
            if kind != b"42":  # Engine.IO: 0 open, 2 ping, 40 connected
                if kind[:1] == b"0":
                    self.transport.write(client_frame(b"40"))
                elif kind == b"2":
                    self.transport.write(client_frame(b"3"))
                elif kind == b"40" and not self.ready.done():
                    self.ready.set_result(None)
                return
        elif data[start + 9 : start + 15] != b"quotes":
            if data[start + 9 : start + 14] == b"alert":
                self.alert(worker, data, start, end)
            return  # not {"type":"quotes",...: snapshots and heartbeats are not counted
        if not worker.counting:
            return
        worker.frames += 1
        self.frames += 1
        worker.latencies_ms.append(time.time() * 1000 - int(TS.search(data, start, end).group(1)))
        self.steps.append(int(STEP.search(data, start, end).group(1)))
        if self.sampled:
            self.kept.append(bytes(data[start:end]))

    def alert(self, worker: Worker, data: bytes, start: int, end: int) -> None:
        """A personal alert frame (bench_alerts): its latency from the alert's ``ts`` and its step (in a window:
        frames read later are counted for exactly-once only), and whether it was this client's user's (the bench
        writes each alert's user in its note, ``ALERT_USER``)."""
        if worker.counting:  # after the window this worker decodes its sampled frames: its reading is late
            latency = time.time() * 1000 - int(TS.search(data, start, end).group(1))
            worker.alert_latencies_ms.append(latency)
            worker.alert_steps.append(int(STEP.search(data, start, end).group(1)))
            self.alert_latencies_ms.append(latency)
        self.alert_ids.append(int(ALERT_ID.search(data, start, end).group(1)))
        user = ALERT_USER.search(data, start, end)
        if user is None or int(user.group(1)) != self.user_id:
            worker.misrouted += 1

    def compressed(self, worker: Worker, data: bytes, start: int, end: int) -> None:
        """A permessage-deflate frame: counted (only heartbeats are too small to be compressed, and they are not,
        so it is taken for a quotes frame); a sampled client keeps it to inflate after the window."""
        if not worker.counting:
            return
        worker.frames += 1
        worker.compressed += 1
        self.frames += 1
        if self.sampled:
            self.kept.append(Deflated(time.time() * 1000, bytes(data[start:end])))

    def inflate_kept(self) -> tuple[list[float], int]:
        """After the window: the kept compressed frames inflated in place, read for latency and step as ``text``
        reads a plain one; (their latencies, how many were not quotes frames after all: snapshots)."""
        latencies, not_quotes, kept = [], 0, []
        for frame in self.kept:
            if isinstance(frame, Deflated):
                data = inflate(frame.raw)
                if data[9:15] != b"quotes":
                    not_quotes += 1
                    continue
                latencies.append(frame.at_ms - int(TS.search(data).group(1)))
                self.steps.append(int(STEP.search(data).group(1)))
                frame = data
            kept.append(frame)
        if not_quotes or latencies:
            self.kept = kept
            self.steps.sort()  # plain and compressed frames of one client, in step order again
            self.frames -= not_quotes
        return latencies, not_quotes

    def seq_gaps(self) -> tuple[int, int]:
        """(updates seen, updates missing or out of order) in the kept frames, by each symbol's seq."""
        follower = SeqFollower()
        for raw in self.kept:
            message = json.loads(raw[2:] if raw[:2] == b"42" else raw)  # Socket.IO: 42["quotes", {...}]
            follower.take(message[1] if isinstance(message, list) else message)
        return follower.updates, follower.missing + follower.stale


class Worker:
    """The clients of one load-generator process, driven by commands from a pipe."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.clients: list[LeanClient] = []
        self.counting = False
        self.frames = 0
        self.compressed = 0  # of the frames, those with RSV1 set
        self.dropped = 0
        self.latencies_ms: list[float] = []
        self.alert_latencies_ms: list[float] = []  # each alert frame read in a window (bench_alerts)
        self.alert_steps: list[int] = []  # and the step of each (the step that fired it)
        self.misrouted = 0  # alert frames of another user
        self.cpu_at = 0.0
        self.done = asyncio.Event()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), self.command)
        await self.done.wait()

    def command(self) -> None:
        name, *args = self.pipe.recv()
        task = asyncio.ensure_future(getattr(self, name)(*args))
        task.add_done_callback(self.answer)

    def answer(self, task: asyncio.Task) -> None:
        self.pipe.send(("error", repr(task.exception())) if task.exception() else ("ok", task.result()))

    async def connect(self, target: Target, count: int, sample_every: int, first: int = 0) -> dict:
        """Open ``count`` clients, numbered from ``first`` (their watchlists); one in ``sample_every`` keeps frames."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
        errors: list[str] = []

        async def one(i: int) -> None:
            async with gate:
                number = first + i
                client = LeanClient(self, target, sampled=number % sample_every == 0, number=number)
                try:
                    await loop.create_connection(lambda: client, target.host, target.port)
                    await asyncio.wait_for(client.ready, HANDSHAKE_TIMEOUT_S)
                except (OSError, ConnectionError, TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if client.transport is not None:
                        client.transport.close()
                else:
                    self.clients.append(client)

        await asyncio.gather(*(one(i) for i in range(count)))
        return {"connected": len(self.clients), "errors": errors}

    async def start(self) -> None:
        for client in self.clients:
            client.steps, client.kept, client.frames = [], [], 0
        self.frames, self.compressed, self.dropped, self.latencies_ms = 0, 0, 0, []
        self.cpu_at, self.counting = time.process_time(), True

    async def stop(self) -> dict:
        self.counting = False
        cpu_s = time.process_time() - self.cpu_at
        seen = missing = 0
        for client in self.clients:
            if client.sampled:
                latencies, not_quotes = client.inflate_kept()  # outside the measured CPU
                self.latencies_ms += latencies
                self.frames -= not_quotes
                self.compressed -= not_quotes
                s, m = client.seq_gaps()
                seen, missing = seen + s, missing + m
        return {
            "frames": self.frames,
            "cpu_s": cpu_s,
            "latencies_ms": self.latencies_ms,
            "steps": [client.steps for client in self.clients],
            "client_frames": [client.frames for client in self.clients],
            "compressed": self.compressed,
            "deflated_clients": sum(client.deflated for client in self.clients),
            "dropped": self.dropped,
            "sampled_updates": seen,
            "sampled_missing": missing,
        }

    async def take_alerts(self) -> dict:
        """The alert frames received since the last call (in or out of a window): each signed-in client's
        (user id, alert ids), and every frame's latency; then forgotten."""
        taken = {
            "ids": [(client.user_id, client.alert_ids) for client in self.clients if client.user_id is not None],
            "latencies_ms": self.alert_latencies_ms,
            "steps": self.alert_steps,  # each latency's step (the step that fired the alert)
            "misrouted": self.misrouted,
            "by_user": [(c.user_id, c.alert_latencies_ms) for c in self.clients if c.user_id is not None],
        }
        for client in self.clients:
            client.alert_ids, client.alert_latencies_ms = [], []
        self.alert_latencies_ms, self.alert_steps, self.misrouted = [], [], 0
        return taken

    async def close(self) -> None:
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()
        self.clients = []
        await asyncio.sleep(0.5)

    async def exit(self) -> None:
        self.done.set()


def _worker_main(pipe, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    freeze_startup_objects()  # no full-collection pauses of start-up objects in the measured window
    asyncio.run(Worker(pipe).serve())


class Workers:
    """Load-generator processes; clients are spread evenly over them."""

    def __init__(self, count: int, cpu: int | None = None):
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = [], []
        self.opened = 0  # clients asked for so far: numbers the next ones
        for _ in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=_worker_main, args=(theirs, cpu), daemon=True)
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)

    def ask(self, name: str, *args, each=None) -> list:
        """Send one command to every worker (``each(i)`` gives per-worker args); return their answers."""
        for i, pipe in enumerate(self.pipes):
            pipe.send((name, *(each(i) if each else args)))
        answers = []
        for pipe in self.pipes:
            status, value = pipe.recv()
            if status != "ok":
                raise RuntimeError(f"load generator failed on {name}: {value}")
            answers.append(value)
        return answers

    def connect(self, target: Target, count: int, sample_every: int = 20) -> dict:
        shares = [count // len(self.pipes) + (i < count % len(self.pipes)) for i in range(len(self.pipes))]
        firsts = [self.opened + sum(shares[:i]) for i in range(len(shares))]
        self.opened += count
        answers = self.ask("connect", each=lambda i: (target, shares[i], sample_every, firsts[i]))
        return {"connected": sum(a["connected"] for a in answers), "errors": [e for a in answers for e in a["errors"]]}

    def window(self, seconds: float) -> list[dict]:
        """Count frames for ``seconds``; each worker's figures."""
        self.ask("start")
        time.sleep(seconds)
        return self.ask("stop")

    def take_alerts(self) -> list[dict]:
        """Each worker's alert frames since the last call (``Worker.take_alerts``)."""
        return self.ask("take_alerts")

    def close_clients(self) -> None:
        self.ask("close")

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("exit")
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
