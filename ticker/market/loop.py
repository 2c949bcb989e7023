"""The market process: one long-lived asyncio loop that steps, persists and publishes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from ticker.market import alerts, services
from ticker.market import lease as leases
from ticker.market.alert_notices import listen_for_alert_changes
from ticker.market.dbthread import DatabaseThread
from ticker.ops import metrics
from ticker.wire import personal, protocol

log = logging.getLogger(__name__)


async def run_market(
    *,
    interval_ms: int,
    run_for: float | None = None,
    seed: int | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> int:
    """Lead the market, or stand by until the leader goes; until ``run_for`` seconds pass or ``stop`` is set.

    Exactly one market process on a database leads (ticker/market/lease.py): it
    steps every ``interval_ms``, each step's database work in one call on the
    market's database thread (one connection, kept open: ticker/market/dbthread.py)
    that also renews the lease, and sends each step's changes to the channel
    layer as ONE ``quote.batch`` message. Any other
    waits as a standby, reading the lease about five times a TTL, and takes
    over once it expires (within a TTL and a poll of the leader's death) or
    is released (SIGTERM). A leader whose step finds the lease taken stores
    nothing more and stands by. SIGTERM and SIGINT finish the current step,
    release the lease and return. Returns the number of steps taken.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    ttl = settings.MARKET_LEASE_TTL_S
    if problem := interval_problem(interval_ms):
        raise ValueError(problem)
    holder = leases.holder_id()
    deadline = time.monotonic() + run_for if run_for else None
    db = DatabaseThread()  # every call of the market's on one thread and connection (ticker/market/dbthread.py)
    steps, opened, seen = 0, False, None
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                held, row = await db(leases.acquire, holder=holder)
            except Exception as exc:
                log.warning("could not read the market lease (%s); trying again in %.1f s", exc, ttl / 5)
                held = None
            else:
                if held is None:
                    seen = _standing_by(row, seen, ttl)
            if held is not None:
                log.info("leading the market: took the lease with token %d (holder %s)", held.token, holder)
                taken, finished = await _lead(
                    held,
                    db=db,
                    site=row.site,
                    interval_ms=interval_ms,
                    seed=None if opened else seed,
                    stop=stop,
                    deadline=deadline,
                )
                steps += taken
                if finished:
                    break
                opened, seen = True, None
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=ttl / 5)
    finally:
        await db.close()
    log.info("market stopped after %d steps", steps)
    return steps


def _standing_by(row, seen: tuple | None, ttl: float) -> tuple:
    """Say once per holder that this process stands by; return the holder said."""
    if (row.holder, row.token) != seen:
        log.info(
            "standing by: the market lease is held by %s (token %d); taking over once it expires (%.1f s)",
            row.holder,
            row.token,
            ttl,
        )
    return row.holder, row.token


def interval_problem(interval_ms: int) -> str | None:
    """Why ``interval_ms`` cannot work with the lease's TTL, or None: every step renews the lease, so a TTL
    shorter than two steps would expire under a leader that is merely one step late."""
    ttl = settings.MARKET_LEASE_TTL_S
    if interval_ms / 1000 > ttl / 2:
        return (
            f"a market interval of {interval_ms} ms is too long for MARKET_LEASE_TTL_S={ttl}: every step renews "
            "the lease, so keep the interval at most half of it (or raise MARKET_LEASE_TTL_S)"
        )
    return None


async def _lead(
    lease: leases.Lease,
    *,
    db: DatabaseThread,
    site: str,
    interval_ms: int,
    seed: int | None,
    stop: asyncio.Event,
    deadline: float | None,
) -> tuple[int, bool]:
    """Step while this process holds ``lease``; return the steps taken, and True if stopped (False: lease lost).

    The market is read from the database first (``services.market_open``):
    it continues every symbol's seq and the step count where the last leader
    stored them, and quotes every symbol once, so clients' seq continues.
    """
    publisher = Publisher(get_channel_layer(), identity=leases.MarketIdentity(site, lease.token))
    market = await db(services.market_open, interval_ms=interval_ms, seed=seed)
    book = await db(alerts.AlertBook.load)
    opened = (market.step_no, len(market.ticks), len(book), interval_ms)
    log.info("market open at step %d with %d symbols and %d armed alerts, every %d ms", *opened)
    listener = asyncio.create_task(listen_for_alert_changes(publisher.layer, lambda: book))
    interval, ttl = interval_ms / 1000, settings.MARKET_LEASE_TTL_S
    next_at = time.monotonic()
    steps = 0
    while not stop.is_set():
        try:  # the last step's fires out of the book, the alerts created since read in: before the step's clock
            await db(book.prepare)
        except Exception as exc:  # the step reads them itself
            log.warning("could not read new alerts ahead of step %d: %s", market.step_no + 1, exc)
        ts = time.time_ns() // 1_000_000
        step_started = time.perf_counter()
        try:
            result = await db(services.market_step, market=market, ts=ts, lease=lease, alerts=book)
        except leases.LeaseLost as lost:
            log.warning("lost the market lease: %s; this step was not stored; standing by", lost)
            listener.cancel()
            return steps, False
        except Exception:
            metrics.market_step_failed()
            log.exception("market step could not be stored; reloading the market from the database")
            # The in-memory rollback cannot tell a failed commit from one that
            # succeeded but reported an error; the database can.
            with contextlib.suppress(Exception):
                market = await db(services.market_open, interval_ms=interval_ms, seed=None)
                book = await db(alerts.AlertBook.load)
        else:
            steps += 1
            took = time.perf_counter() - step_started
            metrics.market_stepped(took, result.step, len(market.ticks))
            await _publish_within_lease(
                publisher, result, took=took, ttl=ttl, ours=lambda: db(leases.still_ours, lease)
            )
        next_at += interval
        now = time.monotonic()
        if next_at < now:  # overran: skip the slots we missed
            next_at = now + interval - (now - next_at) % interval
        if deadline is not None and next_at > deadline:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=next_at - now)
    listener.cancel()
    try:
        released = await db(leases.release, lease)
    except Exception as exc:
        log.warning("could not release the market lease (it expires on its own): %s", exc)
    else:
        if released:
            log.info("released the market lease (token %d) after step %d", lease.token, market.step_no)
    return steps, True


async def _publish_within_lease(publisher: Publisher, result: services.StepResult, *, took: float, ttl: float, ours):
    """Publish a stored step, unless its database work took a whole lease (``took`` >= ``ttl`` s) and ``ours()``,
    a read of the lease row, cannot tell that no standby took over meanwhile (a partition, issue 25): then its
    quotes are held for the next batch (``carried``), published if that step renews the lease. A step that was
    only slow (a loaded machine) goes out as it is."""
    if took >= ttl:
        try:
            still = await ours()
        except Exception:  # the database unreachable: nothing says the lease is still ours
            still = False
        if not still:
            publisher.hold(result)
            log.warning("step %d took %.1f s, past the lease (%.1f s): held for the next", result.step, took, ttl)
            return
    metrics.market_published(await publisher.publish(result))


class Publisher:
    """Sends each step's changes to every web process, and never forgets one.

    Every batch carries the trading session as of its step. If a send fails
    (Redis away), the quotes are kept and go out with the next successful
    batch, latest per symbol, so a change that is not followed by another (a
    halt, say) still reaches every client once the layer is back.
    """

    def __init__(self, layer, *, identity: leases.MarketIdentity | None = None):
        self.layer = layer
        # Every batch says which market sent it; web processes ignore another site's (ticker/hub/source.py).
        self.identity = identity
        self.pending: dict[str, dict] = {}
        self.pending_delisted: set[str] = set()
        self.session: dict | None = None

    def hold(self, result: services.StepResult) -> None:
        """Keep the step's changes for the next batch, sending nothing now (``publish`` sends them with its own)."""
        for tick in result.ticks:
            self.pending[tick.symbol] = protocol.quote(tick)
            self.pending_delisted.discard(tick.symbol)
        for symbol in result.delisted:
            self.pending.pop(symbol, None)
            self.pending_delisted.add(symbol)
        if result.session is not None:
            self.session = protocol.session(result.session)

    async def publish(self, result: services.StepResult) -> bool:
        # An earlier step's quotes that did not go out (a failed send, a step held past the lease) go with this one:
        carried = bool(self.pending or self.pending_delisted)  # web processes resnapshot rather than skip seq
        self.hold(result)
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
        if self.identity is not None:
            message["site"], message["token"] = self.identity
        if self.pending_delisted:
            message["delisted"] = sorted(self.pending_delisted)
        if carried:
            message["carried"] = True  # its seq may skip (docs/protocol.md)
        if result.fires:  # they ride in the batch, written with each user's quotes (ticker/wire/personal.py)
            message["events"] = _alert_events(result)
        try:
            await self.layer.group_send(protocol.QUOTES_GROUP, message)
        except Exception as exc:
            log.warning(
                "could not publish step %d (%d quotes kept for the next one): %s", result.step, len(self.pending), exc
            )
            await self.deliver(result)  # the fires on their own, in case the layer is back for that one
            return False
        self.pending.clear()
        self.pending_delisted.clear()
        return True

    async def deliver(self, result: services.StepResult) -> bool:
        """The step's alert fires as ONE personal message routed by user in each web process (when its batch,
        which carries them otherwise, could not be sent).

        A failed send is logged and counted, not retried: the fires are stored, and the user finds them on the
        next page (GET /api/alerts/)."""
        if not result.fires or self.layer is None:
            return True
        events = _alert_events(result)
        try:
            await self.layer.group_send(personal.PERSONAL_GROUP, personal.message_of(events))
        except Exception as exc:
            metrics.alerts_delivery_failed()
            log.warning(
                "could not deliver the %d alert fires of step %d (they are stored): %s", len(events), result.step, exc
            )
            return False
        return True


def _alert_events(result: services.StepResult) -> list[list]:
    """The step's fires as personal events (ticker/wire/personal.py), their frames as the step encoded them."""
    return [[fire.user_id, "alert", fire.frame] for fire in result.fires]


async def publish(layer, result: services.StepResult) -> bool:
    """Publish one step on its own, as this database's market (tests); run_market keeps a Publisher for retries."""
    identity = await database_sync_to_async(leases.identity)()
    return await Publisher(layer, identity=identity).publish(result)
