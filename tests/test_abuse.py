"""Abuse by one client (issue 21, items 1 and 3) against real daphne and run_market processes.

Frames, not messages: one message sent as 200,000 one-byte continuation frames, or 200,000 pings, is closed
within 2 s (1008, after one error frame) while another client's latency stays as it was. Slow headers: a
connection that trickles its request line and headers is closed by the web process at TICKER_HEADER_TIMEOUT_S,
and nothing whose headers are complete (a WebSocket, SSE, a long-poll) is cut by that deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import pytest
import websockets

from bench.codec import upgrade_request
from bench.stats import percentile

from .clients import recv_data, until
from .conftest import printed_by_django
from .processes import running_site, site_fixture
from .test_settings import start

pytestmark = pytest.mark.processes

FLOOD_FRAMES = 200_000
# From the first byte of the flood to the close. The server decides within a few milliseconds of CPU (its frame
# burst, 250, and the 64-fragment cap are reached in the first 64 KiB it reads); 2 s, the bound, leaves
# room for a shared 2-core machine where other test runs may hold the CPU for a few hundred milliseconds.
CLOSED_WITHIN_S = 2.0
# The second client's p99 during the floods may be at most twice its p99 before, or this, whichever is larger
# (the bound: a 2-core machine shared with other runs has scheduling noise of tens of milliseconds).
LATENCY_FLOOR_MS = 50.0
# Latency samples with and without floods: one per market step (MARKET_INTERVAL_MS below), so each p99 is the 2nd
# largest of 200.
SAMPLES = 200
INTERVAL_MS = 50
ROUNDS = 8
FLOOD_EVERY_S = 0.25


# Default limits and header deadline; a fast market, so latency windows hold enough samples.
site = site_fixture(scope="module", market=True, env={"MARKET_INTERVAL_MS": str(INTERVAL_MS)})


# -- a raw RFC 6455 client: the frames a library would never send ------------------------------------------------


def masked(first: int, payload: bytes) -> bytes:
    """One client frame (masked, RFC 6455 5.3) with a payload under 64 KiB; ``first`` is FIN|opcode."""
    mask = os.urandom(4)
    size = len(payload)
    length = bytes((0x80 | size,)) if size < 126 else bytes((0x80 | 126,)) + struct.pack("!H", size)
    return bytes((first,)) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def continuation_flood(count: int) -> bytes:
    """One text message in ``count`` one-byte frames: a first text frame without FIN, then continuations."""
    return masked(0x01, b"{") + masked(0x00, b" ") * (count - 1)


def ping_flood(count: int) -> bytes:
    return masked(0x89, b"p") * count


FLOODS = (continuation_flood(FLOOD_FRAMES), ping_flood(FLOOD_FRAMES))


def raw_websocket(site) -> tuple[socket.socket, bytes]:
    """A TCP connection whose WebSocket upgrade (no compression offered) the server has answered with 101, and
    whatever came after the 101's head."""
    sock = socket.create_connection(("127.0.0.1", site.port), timeout=10)
    sock.sendall(upgrade_request(f"127.0.0.1:{site.port}", origin=site.base))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"the upgrade was not answered: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, head.partition(b"\r\n\r\n")[2]


def server_frames(sock: socket.socket, buffer: bytes):
    """(opcode, payload) of each server frame (unmasked), until the connection ends."""
    while True:
        while len(buffer) < 2 or len(buffer) < _frame_end(buffer):
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
        end = _frame_end(buffer)
        header = 2 + {126: 2, 127: 8}.get(buffer[1] & 0x7F, 0)
        yield buffer[0] & 0x0F, buffer[header:end]
        buffer = buffer[end:]


def _frame_end(buffer: bytes) -> int:
    length = buffer[1] & 0x7F
    if length == 126:
        return 4 + (struct.unpack("!H", buffer[2:4])[0] if len(buffer) >= 4 else 1 << 20)
    if length == 127:
        return 10 + (struct.unpack("!Q", buffer[2:10])[0] if len(buffer) >= 10 else 1 << 20)
    return 2 + length


def flood(site, data: bytes) -> dict:
    """Send ``data`` on a fresh WebSocket while reading what the server says; how it ended, and how soon."""
    sock, rest = raw_websocket(site)
    sender = threading.Thread(target=_send_quietly, args=(sock, data), daemon=True)
    started = time.monotonic()
    sender.start()
    errors, code, closed_s = [], None, None
    for opcode, payload in server_frames(sock, rest):
        if opcode == 0x1 and (frame := json.loads(payload))["type"] == "error":
            errors.append(frame)
        elif opcode == 0x8:
            code, closed_s = struct.unpack("!H", payload[:2])[0], time.monotonic() - started
            break
    ended_s = time.monotonic() - started  # the close frame, or the connection's end without one
    sock.close()
    sender.join(10)
    return {"code": code, "errors": errors, "closed_s": closed_s if closed_s is not None else ended_s}


def web_cpu_s(site) -> float:
    """The web process's CPU time so far (user + system, from /proc: 10 ms ticks), for the printed figures."""
    with open(f"/proc/{site.processes['web'].pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


# -- the frame limits ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, reason",
    [(continuation_flood(FLOOD_FRAMES), "too_fragmented"), (ping_flood(FLOOD_FRAMES), "rate_limited")],
    ids=["continuations", "pings"],
)
def test_a_flood_of_frames_is_closed_with_1008_within_2_s(site, data, reason):
    """200,000 one-byte continuation frames, or 200,000 pings: one error frame, then close 1008, within 2 s."""
    cpu = web_cpu_s(site)
    ended = flood(site, data)
    print(
        f"\n{reason}: closed after {ended['closed_s'] * 1000:.1f} ms, web CPU {(web_cpu_s(site) - cpu) * 1000:.0f} ms"
    )
    assert ended["code"] == 1008, ended
    assert [e["code"] for e in ended["errors"]] == [reason], ended
    assert ended["closed_s"] <= CLOSED_WITHIN_S, ended
    assert site.get_json("/api/quotes/")["quotes"]  # the web process still serves


def test_a_message_growing_past_16_kib_frame_by_frame_is_refused_with_1009_before_it_completes(site):
    """Fragments adding up to one byte over 16 KiB get too_large and 1009 though the message never ends."""
    from ticker.wire.protocol import MAX_MESSAGE_BYTES

    # Two frames, 10,000 and 6,385 bytes: one over the limit, and no FIN, so the message never completes.
    frames = masked(0x01, b"x" * 10_000) + masked(0x00, b"x" * (MAX_MESSAGE_BYTES + 1 - 10_000))
    ended = flood(site, frames)
    assert ended["code"] == 1009, ended
    assert [e["code"] for e in ended["errors"]] == ["too_large"] and str(MAX_MESSAGE_BYTES) in ended["errors"][0][
        "message"
    ]


def test_a_message_in_a_few_fragments_is_answered(site):
    """A ping sent in 8 frames (a legal fragmented message) gets its pong: fragments below the cap are fine."""
    text = json.dumps({"action": "ping", "pad": "x" * 40}).encode()
    pieces = [text[i : i + 8] for i in range(0, len(text), 8)]
    sock, rest = raw_websocket(site)
    sock.sendall(masked(0x01, pieces[0]) + b"".join(masked(0x00, p) for p in pieces[1:-1]) + masked(0x80, pieces[-1]))
    for opcode, payload in server_frames(sock, rest):
        if opcode == 0x1 and json.loads(payload)["type"] != "heartbeat":
            assert json.loads(payload)["type"] == "pong"
            break
    else:
        raise AssertionError("the connection ended without a pong")
    sock.close()


class Latency:
    """A well-behaved client following every symbol: each quotes frame's delay from the market's ``ts``."""

    def __init__(self, base: str):
        self.base = base
        self.samples: list[tuple[float, float]] = []  # (monotonic arrival, milliseconds since the step's ts)

    async def run(self) -> None:
        url = self.base.replace("http", "ws") + "/ws/quotes/"
        async with websockets.connect(url, origin=self.base, compression=None) as ws:
            await ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
            async for text in ws:
                now_ms, frame = time.time() * 1000, json.loads(text)
                if frame["type"] == "quotes" and frame["quotes"]:
                    self.samples.append((time.monotonic(), now_ms - frame["quotes"][0]["ts"]))

    def since(self, t: float) -> list[float]:
        return sorted(ms for at, ms in self.samples if at >= t)


@pytest.mark.alone  # it compares latency percentiles: other tests' load on the same cores lands in either window
def test_another_clients_latency_holds_while_floods_are_cut(site):
    """While frame floods (both kinds, one every 250 ms) are cut, a second client's p99 is within twice its p99
    without them, or 50 ms; every flood is closed with 1008 within 2 s."""

    async def main():
        follower = Latency(site.base)
        task = asyncio.create_task(follower.run())
        await until(lambda: len(follower.samples) >= 10, limit=30, what="the follower's first quotes")
        quiet, flooded, floods, cpu = [], [], [], {"quiet": 0.0, "flooded": 0.0, "quiet_s": 0.0, "flooded_s": 0.0}
        # Quiet and flooded windows alternate, so that whatever else this shared machine runs meanwhile weighs on
        # both alike; each window ends once it holds its share of the samples.
        for _ in range(ROUNDS):
            start, cpu_start = time.monotonic(), web_cpu_s(site)
            await until(lambda start=start: len(follower.since(start)) >= SAMPLES // ROUNDS, limit=60, what="quiet")
            quiet += follower.since(start)
            cpu["quiet"] += web_cpu_s(site) - cpu_start
            cpu["quiet_s"] += time.monotonic() - start
            start, cpu_start = time.monotonic(), web_cpu_s(site)
            while len(follower.since(start)) < SAMPLES // ROUNDS:
                began = time.monotonic()
                floods.append(await asyncio.to_thread(flood, site, FLOODS[len(floods) % 2]))
                # One flood every FLOOD_EVERY_S: the cost of frames, not of opening thousands of WebSockets a
                # second (each is a handshake and a consumer, limited by the connection cap, not by this issue).
                await asyncio.sleep(max(0.0, FLOOD_EVERY_S - (time.monotonic() - began)))
            flooded += follower.since(start)
            cpu["flooded"] += web_cpu_s(site) - cpu_start
            cpu["flooded_s"] += time.monotonic() - start
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return sorted(quiet), sorted(flooded), floods, cpu

    quiet, flooded, floods, cpu = asyncio.run(main())
    p99_quiet, p99_flooded = percentile(quiet, 99), percentile(flooded, 99)
    quiet_rate = cpu["quiet"] / cpu["quiet_s"]
    print(
        f"\nsecond client's latency p50/p99: without floods {percentile(quiet, 50)}/{p99_quiet} ms "
        f"({len(quiet)} samples), during floods {percentile(flooded, 50)}/{p99_flooded} ms ({len(flooded)} samples, "
        f"{len(floods)} floods, each closed within {max(f['closed_s'] for f in floods) * 1000:.1f} ms); web CPU "
        f"{quiet_rate * 100:.0f}% of a core without floods, {cpu['flooded'] / cpu['flooded_s'] * 100:.0f}% with them: "
        f"{(cpu['flooded'] - quiet_rate * cpu['flooded_s']) / len(floods) * 1000:.1f} ms a flood"
    )
    assert len(floods) >= ROUNDS
    assert all(f["code"] == 1008 and f["closed_s"] <= CLOSED_WITHIN_S for f in floods), floods
    assert p99_flooded <= max(2 * p99_quiet, LATENCY_FLOOR_MS), (p99_quiet, p99_flooded)


# -- the header deadline ------------------------------------------------------------------------------------------


def trickle_headers(port: int, limit: float = 30, *, first: bytes = b"") -> float:
    """Send a request's head (after ``first``, sent at once) one byte a second until the server ends the
    connection; the seconds that took."""
    head = b"GET /api/quotes/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    # Timed from before the connect: the server's deadline starts when it accepts, which may come before
    # create_connection returns here (a few ms on a busy machine made 1.996 s of a 2 s deadline).
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=1)
    try:
        if first:
            sock.sendall(first)
            head = b"a" * 100  # the body, trickled
        for byte in head:
            assert time.monotonic() - started < limit, f"still open after {limit} s"
            try:
                sock.sendall(bytes((byte,)))
                if sock.recv(1) == b"":
                    break  # EOF: the server closed it
            except TimeoutError:
                continue  # nothing from the server within the second: send the next byte
            except OSError:
                break  # reset
        else:
            raise AssertionError("the whole head went out one byte a second and the connection is still open")
    finally:
        sock.close()
    return time.monotonic() - started


def test_trickled_headers_are_cut_at_the_default_deadline_and_the_server_still_answers(site):
    """One header byte a second: the web process closes the connection after 10 s (the default), before 15 s;
    a normal request right after is answered."""
    elapsed = trickle_headers(site.port)
    assert 10 <= elapsed <= 15, elapsed
    assert site.get_json("/api/quotes/")["quotes"]


@pytest.fixture(scope="module")
def quick_site(tmp_path_factory, redis_server):
    """A 2 s header deadline and 1 s heartbeats, no market: long-lived responses outlive the deadline quickly."""
    env = {"TICKER_HEADER_TIMEOUT_S": "2", "TICKER_HEARTBEAT_S": "1"}
    with running_site(tmp_path_factory.mktemp("abuse-quick"), redis_server.url, env=env) as site:
        yield site


def test_a_lowered_header_deadline_is_kept(quick_site):
    """TICKER_HEADER_TIMEOUT_S=2: the trickling connection is closed after 2 s, well before 15."""
    elapsed = trickle_headers(quick_site.port)
    assert 2 <= elapsed <= 5, elapsed
    assert quick_site.get_json("/api/quotes/")["quotes"]


def test_a_trickled_request_body_gets_the_same_deadline(quick_site):
    """Headers sent at once with a long Content-Length, then the body one byte a second: cut at the 2 s deadline
    too (review of issue 21: only the headers were timed, so a slow body held the connection)."""
    head = b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n"
    elapsed = trickle_headers(quick_site.port, first=head)
    assert 2 <= elapsed <= 5, elapsed


def test_an_idle_kept_alive_connection_gets_the_same_deadline_for_its_next_request(quick_site):
    """After a response on a kept-alive connection the next request's head is due within the deadline too."""
    sock = socket.create_connection(("127.0.0.1", quick_site.port), timeout=10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    while sock.recv(65536):
        pass
    assert 1.5 <= time.monotonic() - started <= 5
    sock.close()


def test_open_websocket_sse_and_long_poll_outlive_the_header_deadline(quick_site):
    """A WebSocket, an SSE stream and a long-poll, each with its headers complete, outlast 2x the 2 s deadline."""

    async def websocket_lives() -> dict:
        async with websockets.connect(
            quick_site.base.replace("http", "ws") + "/ws/quotes/", origin=quick_site.base
        ) as ws:
            opened = time.monotonic()
            while time.monotonic() - opened < 5:
                await asyncio.wait_for(ws.recv(), 3)  # heartbeats every second
            await ws.send(json.dumps({"action": "ping"}))
            return await recv_data(ws)

    assert asyncio.run(websocket_lives())["type"] == "pong"

    with urllib.request.urlopen(quick_site.base + "/api/quotes/stream/?symbols=AAPL", timeout=5) as stream:
        opened, events = time.monotonic(), 0
        while time.monotonic() - opened < 5:
            line = stream.readline()
            assert line, "the stream ended"
            events += line.startswith(b"data:")
        assert events >= 4  # heartbeat events, one a second

    # No market: a long-poll at the current step waits its whole 5 s and is answered, not cut at 2 s.
    step = quick_site.get_json("/api/quotes/?since=0&wait=0")["step"]
    started = time.monotonic()
    with urllib.request.urlopen(f"{quick_site.base}/api/quotes/?since={step}&wait=5", timeout=15) as poll:
        assert poll.status == 200 and json.loads(poll.read())["step"] == step
    assert time.monotonic() - started >= 4.5


def test_the_settings_come_from_the_environment_and_nonsense_fails_at_start_up():
    """TICKER_WS_FRAME_RATE/BURST and TICKER_HEADER_TIMEOUT_S are read; 0 s or a frame budget below the message
    limit stops start-up with what to set."""

    def settings_of(**env: str) -> subprocess.CompletedProcess:
        return start(
            "settings.TICKER_WS_FRAME_RATE, settings.TICKER_WS_FRAME_BURST, settings.TICKER_HEADER_TIMEOUT_S", **env
        )

    assert settings_of().stdout.split() == ["200.0", "250", "10.0"]
    assert settings_of(TICKER_HEADER_TIMEOUT_S="2.5", TICKER_WS_FRAME_RATE="300").stdout.split() == [
        "300.0",
        "250",
        "2.5",
    ]
    refused = settings_of(TICKER_HEADER_TIMEOUT_S="0")
    assert refused.returncode != 0 and "TICKER_HEADER_TIMEOUT_S='0': use a number above 0" in refused.stderr
    refused = settings_of(TICKER_WS_FRAME_BURST="10")
    assert refused.returncode != 0 and "set them at least as high" in refused.stderr


def test_the_guards_find_what_they_need_in_the_pinned_versions():
    """autobahn, daphne and Twisted as pinned have every hook the guards use (else daphne would run unguarded)."""
    printed, stderr = printed_by_django("from ticker.edge import server; print(server.guards_missing())")
    assert printed == "[]", stderr
