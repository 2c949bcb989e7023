"""The market process: one long-lived asyncio loop that steps, persists and publishes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from . import metrics, protocol, services

log = logging.getLogger(__name__)


async def run_market(
    *,
    interval_ms: int,
    run_for: float | None = None,
    seed: int | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> int:
    """Step the market every ``interval_ms`` until ``run_for`` seconds pass or ``stop`` is set.

    Each step's database work runs in one worker-thread call; its changes go
    to the channel layer as ONE ``quote.batch`` message. Steps keep to a
    monotonic schedule; a step that overruns skips the missed slots instead
    of bunching them up. SIGTERM and SIGINT finish the current step, then
    return. Returns the number of steps taken.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    publisher = Publisher(get_channel_layer())
    market = await database_sync_to_async(services.market_open)(interval_ms=interval_ms, seed=seed)
    log.info("market open at step %d with %d symbols, every %d ms", market.step_no, len(market.ticks), interval_ms)
    step_db = database_sync_to_async(services.market_step, thread_sensitive=False)
    interval = interval_ms / 1000
    started = time.monotonic()
    deadline = started + run_for if run_for else None
    next_at = started
    steps = 0
    while not stop.is_set():
        ts = time.time_ns() // 1_000_000
        step_started = time.perf_counter()
        try:
            result = await step_db(market=market, ts=ts)
        except Exception:
            metrics.market_step_failed()
            log.exception("market step could not be stored; reloading the market from the database")
            # The in-memory rollback cannot tell a failed commit from one that
            # succeeded but reported an error; the database can.
            with contextlib.suppress(Exception):
                market = await database_sync_to_async(services.market_open)(interval_ms=interval_ms, seed=None)
        else:
            steps += 1
            metrics.market_stepped(time.perf_counter() - step_started, result.step, len(market.ticks))
            metrics.market_published(await publisher.publish(result))
        next_at += interval
        now = time.monotonic()
        if next_at < now:  # overran: skip the slots we missed
            next_at = now + interval - (now - next_at) % interval
        if deadline is not None and next_at > deadline:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=next_at - now)
    log.info("market stopped after %d steps (last step %d)", steps, market.step_no)
    return steps


class Publisher:
    """Sends each step's changes to every web process, and never forgets one.

    Every batch carries the trading session as of its step. If a send fails
    (Redis away), the quotes are kept and go out with the next successful
    batch, latest per symbol, so a change that is not followed by another (a
    halt, say) still reaches every client once the layer is back.
    """

    def __init__(self, layer):
        self.layer = layer
        self.pending: dict[str, dict] = {}
        self.pending_delisted: set[str] = set()
        self.session: dict | None = None

    async def publish(self, result: services.StepResult) -> bool:
        for tick in result.ticks:
            self.pending[tick.symbol] = protocol.quote(tick)
            self.pending_delisted.discard(tick.symbol)
        for symbol in result.delisted:
            self.pending.pop(symbol, None)
            self.pending_delisted.add(symbol)
        if result.session is not None:
            self.session = protocol.session(result.session)
        # A quiet step is published too, with no quotes: web processes take
        # the steady beat of batches as the sign that the market is alive.
        if self.layer is None:
            return True
        message = {
            "type": protocol.BATCH_EVENT,
            "step": result.step,
            "quotes": [self.pending[s] for s in sorted(self.pending)],
            "session": self.session,
            # When it was sent (ms): each web process measures the feed's lag from it (ticker_feed_lag_seconds).
            "ts": time.time_ns() // 1_000_000,
        }
        if self.pending_delisted:
            message["delisted"] = sorted(self.pending_delisted)
        try:
            await self.layer.group_send(protocol.QUOTES_GROUP, message)
        except Exception as exc:
            log.warning(
                "could not publish step %d (%d quotes kept for the next one): %s", result.step, len(self.pending), exc
            )
            return False
        self.pending.clear()
        self.pending_delisted.clear()
        return True


async def publish(layer, result: services.StepResult) -> bool:
    """Publish one step on its own (tests); run_market keeps a Publisher for retries."""
    return await Publisher(layer).publish(result)
