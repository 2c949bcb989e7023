"""End to end with real processes: daphne, run_market and redis-server, clients over real sockets."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
import websockets

from .clients import Follower, recv_data, recv_until, stop_following, until
from .conftest import wait_for
from .processes import site_fixture

pytestmark = pytest.mark.processes

CLIENTS = 50
DURATION_S = 5.0


site = site_fixture()


def test_fifty_clients_get_every_update_of_their_symbols(site):
    """50 WebSocket clients on one daphne get every update of their symbols for 5 s, with no seq gap."""
    subsets = [["*"], ["AAPL", "MSFT"], ["TSLA"], ["NVDA", "AMD", "INTC", "IBM"], ["KO", "PEP", "AAPL"]]
    followers = [Follower(site.base, subsets[i % len(subsets)]) for i in range(CLIENTS)]

    async def main() -> dict[str, int]:
        ready = [asyncio.Event() for _ in followers]
        tasks = [asyncio.create_task(f.run(r)) for f, r in zip(followers, ready, strict=True)]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
            market = site.start_market("--run-for", str(DURATION_S), "--seed", "7")
            await asyncio.to_thread(market.wait, DURATION_S + 30)
            final = {q["symbol"]: q["seq"] for q in site.get_json("/api/quotes/")["quotes"]}
            # Nothing is missing at the end either: each client comes to hold the stored seq of each of its symbols.
            await until(
                lambda: all(f.seq == {s: final[s] for s in f.seq} for f in followers),
                limit=10,
                what="every client to hold the stored seq of its symbols",
            )
        finally:
            await stop_following(tasks)
        return final

    final = asyncio.run(main())
    assert final["AAPL"] >= DURATION_S * 2, "the market barely moved"
    for follower in followers:
        assert follower.problems() == []
        assert set(follower.seq) == (set(final) if follower.symbols == ["*"] else set(follower.symbols))
        assert follower.updates > 0


def wait_for_steps(site, steps: int) -> None:
    """Until the market has stored ``steps`` steps of AAPL (so it is in its loop, signal handlers set).

    30 s: a market process on a loaded 2-core machine can take several seconds to import Django and open.
    """

    def aapl_seq() -> int:
        return next(q["seq"] for q in site.get_json("/api/quotes/?symbols=AAPL")["quotes"])

    wait_for(lambda: aapl_seq() >= steps, timeout=30, what=f"{steps} market steps")


def test_market_restart_continues_from_persisted_prices(site):
    """A market killed with SIGKILL and started again continues each symbol's seq and price."""
    site.start_market("--seed", "1")
    wait_for_steps(site, 3)
    site.stop("market", signal.SIGKILL)
    before = {q["symbol"]: q for q in site.get_json("/api/quotes/")["quotes"]}
    assert before["AAPL"]["seq"] > 0

    stored = {s: q["seq"] for s, q in before.items()}

    def holds_the_stored_prices(frame: dict) -> None:
        assert frame["type"] == "snapshot", frame
        assert {q["symbol"]: q["seq"] for q in frame["quotes"]} == stored

    async def first_frame():
        origin = site.base
        async with websockets.connect(f"ws://127.0.0.1:{site.port}/ws/quotes/", origin=origin) as ws:
            await ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
            snapshot = await recv_data(ws)
            site.start_market("--seed", "2")
            # The first quotes of the new process (its start-up, as in wait_for_steps: 30 s). A snapshot may come
            # first (the hub reconnecting while the market is away): it must hold the stored prices, nothing else.
            return snapshot, await recv_until(ws, "quotes", 30, skipped=holds_the_stored_prices)

    snapshot, frame = asyncio.run(first_frame())
    assert {q["symbol"]: q["seq"] for q in snapshot["quotes"]} == stored
    for quote in frame["quotes"]:
        assert quote["seq"] == before[quote["symbol"]]["seq"] + 1
        # One step moves a price by a few cents at most, not back to the seeded price.
        assert abs(quote["price"] - before[quote["symbol"]]["price"]) < before[quote["symbol"]]["price"] * 0.01


def test_market_stops_cleanly_on_sigterm(site):
    """SIGTERM lets the market finish its step and exit with code 0."""
    site.start_market()
    wait_for_steps(site, 2)
    assert site.stop("market", signal.SIGTERM) == 0
