"""Faults on real processes: Redis away, the market stopped, SIGTERM. Each test owns what it breaks.

The figures these tests print (recovery times) are quoted in docs/reliability.md;
the tests assert only what a user would notice and the bounds the issue sets.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from .clients import follow, get_json, sample, samples, stop_following, until
from .conftest import RedisServer, wait_for
from .processes import running_site

pytestmark = pytest.mark.processes

FAST_HEARTBEAT = {"TICKER_HEARTBEAT_S": "1"}


def test_redis_outage_shows_interrupted_then_every_client_is_whole_again(tmp_path):
    """Redis stopped for 5 s mid-stream: processes stay up, clients are told, then made whole within 5 s."""
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    try:
        with running_site(tmp_path, redis_server.url, market=True, env=FAST_HEARTBEAT) as site:
            asyncio.run(_redis_outage(site, redis_server))
    finally:
        redis_server.stop()


async def _redis_outage(site, redis_server) -> None:
    followers, tasks = await follow(site.base, 3)
    try:
        # The market leads and its batches flow: quotes from it, then a heartbeat that says so. (The site is up
        # once the web process answers; a market slow to take the lease left the first heartbeat "interrupted".)
        await until(
            lambda: all(any(f["type"] == "quotes" for _, f in f.frames) for f in followers),
            limit=20,
            what="the market's first batch",
        )
        flowing = time.monotonic()
        await until(lambda: all(f.feeds_since(flowing)[-1:] == ["live"] for f in followers), limit=5, what="live")
        web, market = site.processes["web"], site.processes["market"]

        await asyncio.to_thread(redis_server.stop)
        stopped = time.monotonic()
        told = await until(
            lambda: all("interrupted" in f.feeds_since(stopped) for f in followers),
            limit=5,
            what="every client to be told the feed is interrupted",
        )
        # Polling reads the database, which the market still writes: it keeps serving.
        assert get_json(site.base, "/api/quotes/")["quotes"]
        await asyncio.sleep(max(0.0, 5 - (time.monotonic() - stopped)))
        assert web.poll() is None and market.poll() is None, "web and market must survive the outage"

        await asyncio.to_thread(redis_server.start)
        back = time.monotonic()
        # The market kept stepping into the database: what clients must reach is at least this.
        stored = {q["symbol"]: q["seq"] for q in get_json(site.base, "/api/quotes/")["quotes"]}
        recovered = await until(
            lambda: all(all(f.seq.get(s, 0) >= seq for s, seq in stored.items()) for f in followers),
            limit=5,
            what="every client to hold the current prices again",
        )
        await until(lambda: all(f.quotes_since(back + recovered + 0.5) for f in followers), limit=5, what="live frames")
        await until(
            lambda: all(f.feeds_since(back)[-1:] == ["live"] for f in followers),
            limit=3,
            what="the heartbeat to say live again",
        )
        assert web.poll() is None and market.poll() is None
        assert [f.gaps for f in followers] == [[], [], []], (
            f"every change after recovery continues seq; the first client's frames (s after the stop, type, step, "
            f"feed or the first quote's symbol and seq): {_frames(followers[0], stopped)}"
        )
        print(f"\nredis outage: clients told in {told:.2f} s; current prices {recovered:.2f} s after Redis returned")
    finally:
        await stop_following(tasks)


def _frames(follower, since: float) -> list[tuple]:
    return [
        (
            round(at - since, 2),
            f["type"],
            f.get("step"),
            f.get("feed") or [(q["symbol"], q["seq"]) for q in f["quotes"][:1]],
        )
        for at, f in follower.frames
    ]


def test_market_stopped_is_announced_and_its_return_resumes_the_stream(tmp_path, redis_server):
    """No batches for a few seconds: heartbeats say 'interrupted'; a restarted market resumes seq exactly."""
    with running_site(tmp_path, redis_server.url, market=True, env=FAST_HEARTBEAT) as site:
        asyncio.run(_market_stop(site))


async def _market_stop(site) -> None:
    followers, tasks = await follow(site.base, 2)
    try:
        assert await asyncio.to_thread(site.stop, "market") == 0
        stopped = time.monotonic()
        told = await until(
            lambda: all("interrupted" in f.feeds_since(stopped) for f in followers),
            limit=6,
            what="the heartbeat to say the feed is interrupted",
        )
        await asyncio.to_thread(site.start_market)
        restarted = time.monotonic()
        await until(lambda: all(f.quotes_since(restarted) for f in followers), limit=10, what="quotes again")
        await until(
            lambda: all(f.feeds_since(restarted)[-1:] == ["live"] for f in followers),
            limit=5,
            what="the heartbeat to say live again",
        )
        assert [f.gaps for f in followers] == [[], []]
        print(f"\nmarket stopped: clients told in {told:.2f} s")
    finally:
        await stop_following(tasks)


def test_sigterm_closes_websockets_with_1001_and_the_market_finishes_its_step(tmp_path, redis_server):
    """SIGTERM: every WebSocket gets close code 1001 (going away); daphne and the market exit 0."""
    with running_site(tmp_path, redis_server.url, market=True) as site:
        asyncio.run(_sigterm(site))


async def _sigterm(site) -> None:
    followers, tasks = await follow(site.base, 3)
    # In a thread: the followers must keep reading to answer the close.
    assert await asyncio.to_thread(site.stop, "web", signal.SIGTERM) == 0
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert [f.close_code for f in followers] == [1001, 1001, 1001]
    before = get_json_or_none(site.base)
    assert before is None, "the web process is gone"
    market = site.processes["market"]
    assert site.stop("market", signal.SIGTERM) == 0
    assert "market stopped after" in (site.tmp / "market.log").read_text()
    assert market.returncode == 0


def get_json_or_none(base: str) -> dict | None:
    try:
        return get_json(base, "/api/quotes/")
    except OSError:
        return None


def open_connections(site, transport: str) -> int:
    """How many connections of ``transport`` the site's web process holds (its /metrics, from loopback)."""
    return int(sample(samples(site.base + "/metrics"), "ticker_connections", transport=transport))


def test_sigterm_with_long_polls_and_streams_in_flight_exits_at_once(tmp_path, redis_server):
    """Requests waiting in async views do not keep a stopping web process alive (it used to hang)."""
    with running_site(tmp_path, redis_server.url) as site:
        step = get_json(site.base, "/api/quotes/")["step"]
        answers: list[str] = []

        def wait_on(path: str) -> None:
            try:
                with urllib.request.urlopen(site.base + path, timeout=30) as response:
                    response.read()
                answers.append("answered")
            except (OSError, http.client.HTTPException) as exc:  # a stream cut mid-chunk: IncompleteRead
                answers.append(type(exc).__name__)

        # No market runs, so a long-poll from the current step waits its whole 25 s (a cursor beyond the
        # current step would be answered at once with a snapshot: docs/protocol.md).
        waiting = [f"/api/quotes/?since={step}&wait=25"] * 20 + ["/api/quotes/stream/"] * 5
        threads = [threading.Thread(target=wait_on, args=(path,), daemon=True) for path in waiting]
        for thread in threads:
            thread.start()
        # All of them inside the views, waiting: the process's own count of the connections it holds.
        wait_for(
            lambda: [open_connections(site, t) for t in ("long_poll", "sse")] == [20, 5],
            timeout=30,
            what="20 long-polls and 5 streams held by the web process",
        )
        assert answers == []
        assert site.stop("web", signal.SIGTERM, timeout=5) == 0
        for thread in threads:
            thread.join(10)
        assert len(answers) == len(waiting), "every waiting client got an answer or a closed connection"


@pytest.mark.soak
def test_a_client_that_stops_reading_for_30_s_gets_the_latest_prices_not_a_backlog(tmp_path, redis_server):
    """A stalled reader: the others keep every update; on reading again it gets a bounded backlog, then a snapshot."""
    with running_site(tmp_path, redis_server.url, market=True) as site:
        asyncio.run(_slow_reader(site))


async def _slow_reader(site) -> None:
    from bench.codec import PING, PONG, TEXT, client_frame, take_frame, upgrade_request

    followers, tasks = await follow(site.base, 1)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    raw.connect(("127.0.0.1", site.port))
    raw.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=raw, limit=4096)
    writer.write(upgrade_request(f"127.0.0.1:{site.port}"))
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    writer.write(client_frame(json.dumps({"action": "subscribe", "symbols": ["*"]}).encode()))
    buffer = bytearray()

    async def next_frame() -> tuple[dict, int]:
        """The next text frame, and how many bytes were read for it."""
        read = 0
        while (frame := take_frame(buffer)) is None:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, "the server closed the slow reader's connection"
            buffer.extend(chunk)
            read += len(chunk)
        opcode, payload = frame
        if opcode == PING:
            writer.write(client_frame(payload, opcode=PONG))
        return (json.loads(payload) if opcode == TEXT else {"type": "control"}), read

    while (await next_frame())[0]["type"] != "snapshot":
        pass
    try:
        pid = site.processes["web"].pid
        rss_before = rss_kib(pid)
        stalled = time.monotonic()
        await asyncio.sleep(30)  # not reading
        during = [f for at, f in followers[0].frames if at >= stalled and f["type"] == "quotes"]
        rss_after = rss_kib(pid)
        stored = {q["symbol"]: q["seq"] for q in get_json(site.base, "/api/quotes/")["quotes"]}

        backlog_bytes, backlog_frames = 0, 0
        while True:
            frame, read = await next_frame()
            backlog_bytes += read
            if frame["type"] == "snapshot":
                break
            backlog_frames += frame["type"] == "quotes"
            # Replaying the whole stall would be ~360 KiB of old frames: stop well past the bound.
            assert backlog_bytes < 512 * 1024, f"no snapshot after {backlog_frames} old frames: a replayed backlog"
        held = {q["symbol"]: q["seq"] for q in frame["quotes"]}
        assert held.keys() == stored.keys() and all(held[s] >= stored[s] for s in stored), "the latest prices"
        for _ in range(4):  # and then the stream goes on from the snapshot, seq by seq
            frame, _ = await next_frame()
            for quote in frame.get("quotes", ()) if frame["type"] == "quotes" else ():
                assert quote["seq"] == held[quote["symbol"]] + 1
                held[quote["symbol"]] = quote["seq"]
    finally:
        writer.close()
        await stop_following(tasks)
    print(
        f"\nslow reader: 30 s stalled; backlog on resuming {backlog_bytes / 1024:.0f} KiB ({backlog_frames} old "
        f"frames), then a snapshot; daphne RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB; "
        f"the other client got {len(during)} frames meanwhile, gaps {followers[0].gaps}"
    )
    # What sat in the buffers is bounded (the whole 30 s at the default feed is ~360 KiB), ...
    assert backlog_bytes < 192 * 1024
    # ... and the others were not held up: a frame for nearly every 250 ms step, none missing.
    assert len(during) >= 30 * 4 * 0.8 and followers[0].gaps == []
    assert rss_after - rss_before < 8 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.soak
def test_the_server_drops_a_client_that_never_answers_its_pings(tmp_path, redis_server):
    """Half-open from the server's side: a client that reads nothing, so answers no ping, is dropped within 60 s."""
    with running_site(tmp_path, redis_server.url, market=True) as site:
        from bench.codec import client_frame, upgrade_request

        raw = socket.create_connection(("127.0.0.1", site.port))
        raw.sendall(upgrade_request(f"127.0.0.1:{site.port}"))
        assert b" 101 " in raw.recv(4096)
        raw.sendall(client_frame(json.dumps({"action": "subscribe", "symbols": ["AAPL"]}).encode()))
        silent_from = time.monotonic()
        time.sleep(55)  # daphne pings every 20 s and gives up 30 s after an unanswered ping
        raw.settimeout(5)
        closed = False
        try:
            while raw.recv(65536):  # what was sent before the drop, then the end
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
        raw.close()
        assert closed, f"still open {time.monotonic() - silent_from:.0f} s after the client went silent"
