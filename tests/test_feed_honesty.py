"""Issue 20 on real processes (daphne, run_market, redis-server): a feed state that never lies, and one way out.

The market stopped (SIGSTOP, or SIGKILL and a restart) for 20 s with no standby: every client is told
"interrupted" and nothing else until the market steps again (it used to be told "live" and sent a
snapshot every 5 s, each time redis-py's 5 s read timeout met channels_redis's 5 s blocking receive).
And a 4 KB nested message, which used to kill its consumer with 1011 and leave a ghost connection the
fan-out fed forever, is answered ``bad_json`` and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
import websockets

from .clients import follow, recv_data, sample, samples, stop_following, until
from .conftest import wait_for
from .processes import running_site

pytestmark = pytest.mark.processes

# Heartbeats every second, so "interrupted continuously" is seen as a run of heartbeats, not one frame.
FAST_HEARTBEAT = {"TICKER_HEARTBEAT_S": "1"}
STOPPED_S = 20
# The bound: told within 5 s (the hub calls the feed interrupted after 3 s without a batch).
TOLD_WITHIN_S = 5.0
TRANSPORTS = ("websocket", "sse", "long_poll")


class SseFollower(threading.Thread):
    """An SSE client of every symbol that records each event (arrival time, kind, data) and checks seq."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.url = base + "/api/quotes/stream/"
        self.events: list[tuple[float, str, dict]] = []
        self.seq: dict[str, int] = {}
        self.gaps: list[str] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=30) as response:
                current: dict[str, str] = {}
                while not self.stopping.is_set() and (line := response.readline()):
                    text = line.decode().rstrip("\n")
                    if text:
                        if not text.startswith((":", "retry:")):
                            name, _, value = text.partition(": ")
                            current[name] = value
                        continue
                    if "data" in current:
                        self.take(current["event"], json.loads(current["data"]))
                    current = {}
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def take(self, kind: str, data: dict) -> None:
        self.events.append((time.monotonic(), kind, data))
        for quote in data.get("quotes", ()) if kind in ("snapshot", "quotes") else ():
            held = self.seq.get(quote["symbol"])
            if kind == "quotes" and held is not None and quote["seq"] != held + 1:
                self.gaps.append(f"{quote['symbol']} {held} -> {quote['seq']}")
            self.seq[quote["symbol"]] = quote["seq"]

    def frames(self) -> list[tuple[float, dict]]:
        """The events as (time, frame) pairs, in the WebSocket followers' terms."""
        return [(at, {**data, "type": kind}) for at, kind, data in list(self.events)]


def _heard(frames: list[tuple[float, dict]], since: float, kind: str) -> list[tuple[float, dict]]:
    return [(at, f) for at, f in frames if at >= since and f["type"] == kind]


def _verdict(frames: list[tuple[float, dict]], stopped: float, resumed: float) -> list[str]:
    """What one client saw go wrong around the market's absence (empty: nothing)."""
    beats = _heard(frames, stopped, "heartbeat")
    told = next((at for at, f in beats if f["feed"] == "interrupted"), None)
    if told is None or told - stopped > TOLD_WITHIN_S:
        return [f"not told 'interrupted' within {TOLD_WITHIN_S} s (told at {told and told - stopped})"]
    away = [(at, f) for at, f in frames if told <= at < resumed]
    problems = [f"{f['type']} frame while the market was away" for _, f in away if f["type"] != "heartbeat"]
    problems += [f"heartbeat {f['feed']} while the market was away" for _, f in away if f.get("feed") == "live"]
    # Heartbeats every second for about 15 s: at least 8 of them, generous for a loaded machine.
    if len(away) < 8:
        problems.append(f"only {len(away)} heartbeats while the market was away")
    if "live" not in [f["feed"] for _, f in _heard(frames, resumed, "heartbeat")]:
        problems.append("never told 'live' again after the market came back")
    if len(_heard(frames, resumed, "snapshot")) > 1:
        problems.append("more than one snapshot after the market came back")
    return problems


def test_market_stopped_20_s_every_client_sees_interrupted_and_nothing_else_sigstop(tmp_path, redis_server):
    """Market SIGSTOPped 20 s, no standby: 50 WebSocket and 10 SSE clients told 'interrupted' within 5 s, no
    'live' and no snapshot until it steps again after SIGCONT, then at most one snapshot each and no seq gap."""
    with running_site(tmp_path, redis_server.url, market=True, env=FAST_HEARTBEAT) as site:
        asyncio.run(_market_away(site, "sigstop"))


def test_market_stopped_20_s_every_client_sees_interrupted_and_nothing_else_sigkill(tmp_path, redis_server):
    """The same with the market SIGKILLed and, 20 s later, a new run_market (it continues seq from the database)."""
    with running_site(tmp_path, redis_server.url, market=True, env=FAST_HEARTBEAT) as site:
        asyncio.run(_market_away(site, "sigkill"))


async def _market_away(site, how: str) -> None:
    streams = [SseFollower(site.base) for _ in range(10)]
    followers, tasks = await follow(site.base, 50)
    try:
        for stream in streams:
            stream.start()
        await until(lambda: all(_heard(s.frames(), 0, "quotes") for s in streams), limit=20, what="SSE quotes")
        market = site.processes["market"]
        if how == "sigstop":
            os.kill(market.pid, signal.SIGSTOP)
        else:
            await asyncio.to_thread(site.stop, "market", signal.SIGKILL)
        stopped = time.monotonic()
        clients = [f.frames for f in followers] + [s.frames() for s in streams]
        await asyncio.sleep(STOPPED_S / 2)
        ready = await asyncio.to_thread(_readyz, site.base)
        await asyncio.sleep(STOPPED_S / 2)
        if how == "sigstop":
            os.kill(market.pid, signal.SIGCONT)
        else:
            await asyncio.to_thread(site.start_market)
        resumed = time.monotonic()
        every = [*followers, *streams]

        def back() -> bool:
            frames = [f.frames for f in followers] + [s.frames() for s in streams]
            return all(_heard(fs, resumed, "quotes") for fs in frames)

        # A restarted market needs a few seconds to start Django and take the lease: 30 s is generous.
        back_after = await until(back, limit=30, what="quotes from every client after the market came back")
        await asyncio.sleep(2)  # a snapshot that would follow the first quotes must be seen too
        clients = [f.frames for f in followers] + [s.frames() for s in streams]
        problems = {i: p for i, fs in enumerate(clients) if (p := _verdict(fs, stopped, resumed))}
        assert problems == {}, problems
        assert [f.gaps for f in followers] == [[]] * 50
        assert [s.gaps for s in streams] == [[]] * 10
        assert [s.error for s in streams] == [None] * 10
        # The reason's code for everyone, its words for a caller that may read /metrics (this one: loopback).
        assert ready[0] == 503 and ready[1]["reasons"] == ["feed_stale"], ready
        assert any("no batch from the market" in detail for detail in ready[1]["details"]), ready
        told = [next(at for at, f in _heard(fs, stopped, "heartbeat") if f["feed"] == "interrupted") for fs in clients]
        snapshots = sum(len(_heard(fs, resumed, "snapshot")) for fs in clients)
        print(
            f"\nmarket {how} {STOPPED_S} s: {len(every)} clients told in {min(told) - stopped:.2f}-"
            f"{max(told) - stopped:.2f} s; quotes again {back_after:.2f} s after it came back; "
            f"{snapshots} snapshot(s) in all after it came back; /readyz {ready[0]} {ready[1]['reasons']}"
        )
    finally:
        for stream in streams:
            stream.stopping.set()
        await stop_following(tasks)
        for stream in streams:
            await asyncio.to_thread(stream.join, 10)


def _readyz(base: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _gauges(base: str) -> dict[str, float]:
    """The gauges that must fall to 0 once every client has gone (/metrics, from loopback)."""
    found = samples(base + "/metrics")
    gauges = {t: sample(found, "ticker_connections", transport=t) for t in TRANSPORTS}
    return {**gauges, "fanout_entries": sample(found, "ticker_fanout_entries")}


def _operations_data(site, redis_server) -> dict[str, float]:
    """The same figures from the web process's operations report, the data the operations view (/admin/ops/) shows:
    read from the registry it reads (ticker/ops/registry.py), in the suite's Redis."""
    client = redis_server.client()
    prefix = site.env["TICKER_CHANNEL_PREFIX"] + ":ops:"
    pid = site.processes["web"].pid
    keys = [key for key in client.zrange(prefix + "live", 0, -1) if key.decode().endswith(f":{pid}")]
    if not keys or (raw := client.get(keys[0])) is None:
        return {}
    report = json.loads(raw)
    return {**report["connections"], "fanout_entries": report["fanout_entries"]}


def test_ten_clients_sending_4_kb_of_nesting_get_bad_json_stay_open_and_leave_nothing_behind(tmp_path, redis_server):
    """Issue 20's ghost connections: 10 clients each send '[' * 2000 + ']' * 2000, get bad_json, still get quotes;
    once they close every connection gauge and the fan-out's entries are back to 0, in /metrics and in the
    operations data."""
    with running_site(tmp_path, redis_server.url, market=True) as site:
        asyncio.run(_nested(site))
        # Reports are written every second: 10 s is generous on a busy machine.
        zero = dict.fromkeys([*TRANSPORTS, "fanout_entries"], 0)
        wait_for(lambda: _operations_data(site, redis_server) == zero, timeout=10, what="the operations data at 0")


async def _nested(site) -> None:
    url = site.base.replace("http", "ws") + "/ws/quotes/"
    nested = "[" * 2000 + "]" * 2000
    sockets = [await websockets.connect(url, origin=site.base) for _ in range(10)]
    for ws in sockets:
        await ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
        assert (await recv_data(ws))["type"] == "snapshot"
        await ws.send(nested)
    for ws in sockets:
        answer = await recv_data(ws)
        while answer["type"] == "quotes":
            answer = await recv_data(ws)
        assert (answer["type"], answer["code"]) == ("error", "bad_json"), answer
    # Still open and still fed: a quotes frame after the answer, on every connection.
    for ws in sockets:
        assert (await recv_data(ws))["type"] == "quotes"
    during = await asyncio.to_thread(_gauges, site.base)
    assert during["websocket"] == 10 and during["fanout_entries"] == 10, during
    for ws in sockets:
        await ws.close()
    assert [ws.close_code for ws in sockets] == [1000] * 10
    zero = dict.fromkeys([*TRANSPORTS, "fanout_entries"], 0)
    # The server counts a close once its side of the closing handshake is done: a moment after the client's.
    await until(lambda: _gauges(site.base) == zero, limit=10, what=f"every gauge at 0 ({_gauges(site.base)})")
    found = await asyncio.to_thread(samples, site.base + "/metrics")
    assert sample(found, "ticker_closes_total", code="1011") == 0, "no connection ended with 1011"
