"""End to end with real processes: daphne, run_market and redis-server, clients over real sockets."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
import websockets

from .clients import recv_data
from .processes import running_site

pytestmark = pytest.mark.processes

CLIENTS = 50
DURATION_S = 5.0


@pytest.fixture
def site(tmp_path, redis_server):
    with running_site(tmp_path, redis_server.url) as site:
        yield site


class Client:
    """A WebSocket client that checks every frame: one per step, seq +1 per symbol."""

    def __init__(self, url: str, symbols: list[str]):
        self.url, self.symbols = url, symbols
        self.seq: dict[str, int] = {}
        self.updates = 0
        self.gaps: list[str] = []
        self.last_step = -1

    async def run(self, subscribed: asyncio.Event, stop: asyncio.Event) -> None:
        origin = self.url.replace("ws://", "http://").split("/ws/")[0]
        async with websockets.connect(self.url, origin=origin) as ws:
            await ws.send(json.dumps({"action": "subscribe", "symbols": self.symbols}))
            snapshot = await recv_data(ws)
            assert snapshot["type"] == "snapshot"
            self.seq = {q["symbol"]: q["seq"] for q in snapshot["quotes"]}
            subscribed.set()
            while not stop.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except TimeoutError:
                    continue
                if frame["type"] == "heartbeat":  # every 5 s; test_reliability checks what it says
                    continue
                assert frame["type"] == "quotes", frame
                if frame["step"] <= self.last_step:
                    self.gaps.append(f"step {frame['step']} after {self.last_step}")
                self.last_step = frame["step"]
                for quote in frame["quotes"]:
                    symbol = quote["symbol"]
                    if self.symbols != ["*"] and symbol not in self.symbols:
                        self.gaps.append(f"unsubscribed {symbol}")
                    if quote["seq"] != self.seq[symbol] + 1:
                        self.gaps.append(f"{symbol} {self.seq[symbol]} -> {quote['seq']}")
                    self.seq[symbol] = quote["seq"]
                    self.updates += 1


def test_fifty_clients_get_every_update_of_their_symbols(site):
    """50 WebSocket clients on one daphne get every update of their symbols for 5 s, with no seq gap."""
    url = f"ws://127.0.0.1:{site.port}/ws/quotes/"
    subsets = [["*"], ["AAPL", "MSFT"], ["TSLA"], ["NVDA", "AMD", "INTC", "IBM"], ["KO", "PEP", "AAPL"]]
    clients = [Client(url, subsets[i % len(subsets)]) for i in range(CLIENTS)]

    async def main():
        stop = asyncio.Event()
        ready = [asyncio.Event() for _ in clients]
        tasks = [asyncio.create_task(c.run(r, stop)) for c, r in zip(clients, ready, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
        market = site.start_market("--run-for", str(DURATION_S), "--seed", "7")
        await asyncio.to_thread(market.wait, DURATION_S + 30)
        await asyncio.sleep(1.0)  # the last step's frames are on their way
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    final = {q["symbol"]: q["seq"] for q in site.get_json("/api/quotes/")["quotes"]}
    assert final["AAPL"] >= DURATION_S * 2, "the market barely moved"
    for client in clients:
        assert client.gaps == []
        # Nothing is missing at the end either: the client holds the stored seq of each of its symbols.
        assert client.seq == {s: final[s] for s in client.seq}
        assert client.updates > 0


def test_market_restart_continues_from_persisted_prices(site):
    """A market killed with SIGKILL and started again continues each symbol's seq and price."""
    site.start_market("--seed", "1")
    time.sleep(2)
    site.stop("market", signal.SIGKILL)
    before = {q["symbol"]: q for q in site.get_json("/api/quotes/")["quotes"]}
    assert before["AAPL"]["seq"] > 0

    async def first_frame():
        origin = site.base
        async with websockets.connect(f"ws://127.0.0.1:{site.port}/ws/quotes/", origin=origin) as ws:
            await ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
            snapshot = await recv_data(ws)
            site.start_market("--seed", "2")
            return snapshot, await recv_data(ws, 20)

    snapshot, frame = asyncio.run(first_frame())
    assert {q["symbol"]: q["seq"] for q in snapshot["quotes"]} == {s: q["seq"] for s, q in before.items()}
    for quote in frame["quotes"]:
        assert quote["seq"] == before[quote["symbol"]]["seq"] + 1
        # One step moves a price by a few cents at most, not back to the seeded price.
        assert abs(quote["price"] - before[quote["symbol"]]["price"]) < before[quote["symbol"]]["price"] * 0.01


def test_market_stops_cleanly_on_sigterm(site):
    """SIGTERM lets the market finish its step and exit with code 0."""
    site.start_market()
    time.sleep(1.5)
    assert site.stop("market", signal.SIGTERM) == 0
