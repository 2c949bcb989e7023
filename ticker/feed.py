"""The market process: one long-lived asyncio loop that steps, persists and publishes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from . import protocol, services

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
    layer = get_channel_layer()
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
        try:
            result = await step_db(market=market, ts=ts)
        except Exception:
            log.exception("market step could not be stored; the step is retried")
        else:
            steps += 1
            if result.ticks:
                await publish(layer, result)
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


async def publish(layer, result: services.StepResult) -> None:
    """Send one step's changes to every web process; a failure is logged, not fatal."""
    if layer is None:
        return
    message = {
        "type": protocol.BATCH_EVENT,
        "step": result.step,
        "quotes": [protocol.quote(tick) for tick in result.ticks],
    }
    try:
        await layer.group_send(protocol.QUOTES_GROUP, message)
    except Exception as exc:
        # The prices are stored; web processes catch up from the database when
        # the layer is back (ticker.hub), and clients see the seq gap.
        log.warning("could not publish step %d: %s", result.step, exc)
