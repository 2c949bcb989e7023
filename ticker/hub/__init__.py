"""One subscription to the feed per web process, fanned out to its connections.

The tutorial design puts every WebSocket consumer in a channel-layer group,
so each market step costs one Redis message, one channel-layer receive and
one consumer dispatch per client (channels_redis's core layer also drops
messages silently once a channel holds ``capacity`` of them). Here each web
process holds ONE channel in the ``quotes`` group; its hub receives each
batch once, keeps the latest quote of every symbol, encodes each distinct
frame once per step and hands it to the connections that want it. Any
number of web processes still share the feed through Redis.

The hub is put together from one piece per job:

- ``follower.FeedFollower``: group membership, receiving, resync, liveness;
- ``store.QuoteStore``: the latest quote of each symbol and its change step;
- ``fanout.Fanout``: each connection's delivery state and the broadcasts;
- ``heartbeats.Heartbeats``: when a heartbeat is due;
- ``personal.PersonalRouter``: signed-in users' connections and their personal frames (issue 23);
- ``ticker.runtime.gc_schedule.FullCollections``: full collections between broadcasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import weakref
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from ticker.hub.clock import Clock, LoopClock
from ticker.hub.delivery import Delivery
from ticker.hub.fanout import Fanout
from ticker.hub.figures import watch as watch_figures
from ticker.hub.follower import INTERRUPTED, LIVE, FeedFollower
from ticker.hub.heartbeats import WATCH_EVERY_S, Heartbeats
from ticker.hub.interest import EVERYTHING, NOTHING, Interest
from ticker.hub.personal import PersonalRouter
from ticker.hub.ratecap import RateCap
from ticker.hub.store import QuoteStore
from ticker.market import lease, selectors
from ticker.market.selectors import Listed
from ticker.ops import metrics
from ticker.runtime import gc_schedule
from ticker.wire import protocol

__all__ = [
    "EVERYTHING",
    "INTERRUPTED",
    "LIVE",
    "NOTHING",
    "Delivery",
    "FeedUnavailable",
    "Interest",
    "PersonalRouter",
    "QuoteHub",
    "RateCap",
    "close_hub",
    "get_hub",
]

log = logging.getLogger(__name__)

# A full collection waits this long after a broadcast: the loop first writes
# out what Twisted buffered and what SSE streams queued (ticker/runtime/gc_schedule.py).
COLLECT_AFTER_S = 0.02
# How long a connection waits for the hub's first snapshot before it is told
# to come back later (Redis and the database both unreachable at start-up).
READY_TIMEOUT_S = 5.0


class FeedUnavailable(Exception):
    """The hub holds no quotes yet: neither the channel layer nor the database answered in time."""

    retry_after_s = 5


def _stored_market() -> Listed:
    """The stored market and the identity of the market that stored it (whose batches this process follows)."""
    # The identity first: if the lease changed hands before it was read, the old leader's last step was stored
    # before that, so the market read after it includes the step even if it never reached Redis.
    market = lease.identity()
    return dataclasses.replace(selectors.listed(), market=market)


async def _load_stored() -> Listed:
    return await database_sync_to_async(_stored_market)()


class QuoteHub:
    """The process's view of the feed: the latest quotes, and who wants which."""

    def __init__(
        self,
        channel_layer,
        *,
        stale_after_s: float = 3.0,
        heartbeat_s: float = 5.0,
        clock: Clock | None = None,
        load=_load_stored,
        compress_min_bytes: int = 256,
    ):
        self.store = QuoteStore()
        self.clock = clock or LoopClock()
        self.fanout = Fanout(
            self.store, self.clock, on_broadcast=self._collect_soon, compress_min_bytes=compress_min_bytes
        )
        self.personal = PersonalRouter(step=lambda: self.store.step, sent=self.fanout.sent)
        self.follower = FeedFollower(
            channel_layer,
            stale_after_s=stale_after_s,
            load=load,
            on_load=self.load,
            on_batch=self.on_batch,
            on_personal=self.personal.route,
        )
        self.heartbeat_s = heartbeat_s
        # Full garbage collections between broadcasts (ticker/runtime/gc_schedule.py);
        # only the process's own hub (get_hub) takes them over.
        self.collections = gc_schedule.FullCollections()
        self._collect_timer = None
        self._tasks: list[asyncio.Task] = []

    @property
    def step(self) -> int:
        return self.store.step

    @property
    def feed(self) -> str:
        """The feed's state now: LIVE or INTERRUPTED."""
        return self.follower.state(self.clock.now())

    async def ready(self, wait_s: float | None = None) -> QuoteHub:
        """Start the hub on first use; return once it holds a snapshot, or raise FeedUnavailable after ``wait_s``."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self.follower.run(), name="quote-feed"),
                asyncio.create_task(self._heartbeats(), name="quote-heartbeats"),
            ]
        try:
            async with asyncio.timeout(wait_s):
                await self.follower.ready.wait()
        except TimeoutError:
            raise FeedUnavailable("No quotes yet: the channel layer and the database did not answer.") from None
        return self

    # -- from the feed ----------------------------------------------------

    def load(self, listed: Listed, resnapshot: bool = False) -> None:
        """Take the stored market as the truth (start, or back after an outage).

        With ``resnapshot`` (back after an outage) every connection gets a
        fresh snapshot of its symbols if the database holds quotes newer than
        the clients have: while the feed was away seq moved on by several
        steps, and a snapshot makes each client whole in one frame instead of
        a gap and a resync round trip per client. If nothing changed (the
        market itself was away) no frame goes out (issue 20: every reload used
        to snapshot every client, every 5 s while the market was stopped).
        """
        if listed.session is not None:
            self.store.session = listed.session
        gone = self.store.symbols() - listed.symbols
        fresh = self.store.replace(listed.step, listed.quotes(), listed.changed_steps())
        if gone:  # delisted while the feed was away (or before this hub's first batch)
            self.fanout.delisted(listed.step, gone)
        if fresh and resnapshot:
            self.fanout.resnapshot()
        elif fresh:
            self.fanout.quotes(listed.step, fresh, self.store.previous)

    def on_batch(self, message: dict[str, Any], new_leader: bool = False) -> bool:
        """One market step from the feed: apply it, and send each connection at most one frame.

        The first batch of a ``new_leader`` (a market that took the lease over)
        is applied only if it continues every held seq by one; if the old
        leader stored a step it never published, it does not, and this
        returns False without applying anything: the caller reloads the
        stored market and resnapshots every connection instead of handing
        clients a gap.
        """
        metrics.batch_received(message)
        with gc_schedule.paused():  # the step's garbage goes by reference counts; the collector waits
            if events := message.get("events"):  # the step's alert fires: each rides with its user's quotes frame
                self.personal.ride(events, self.fanout.riders)
            try:
                return self._apply(message, new_leader)
            finally:
                if events:
                    self.personal.flush(self.fanout.riders)  # the connections that got no quotes frame this step

    def _apply(self, message: dict[str, Any], new_leader: bool) -> bool:
        if new_leader and not self.store.continues(message["quotes"]):
            return False
        # A batch that carries an earlier step's quotes (its send failed, or the step was held past the lease)
        # may skip seq: every connection gets a snapshot of what it follows instead of a gap.
        gap = message.get("carried", False) and not self.store.continues(message["quotes"])
        if "session" in message:
            self.store.session = message["session"]
        if delisted := [s for s in message.get("delisted", ()) if self.store.known(s)]:
            self.store.delist(delisted)
            self.fanout.delisted(message["step"], delisted)
        if (fresh := self.store.apply(message["step"], message["quotes"])) and gap:
            self.fanout.resnapshot()
        elif fresh:
            self.fanout.quotes(message["step"], fresh, self.store.previous)
        return True

    # -- heartbeats and collections ---------------------------------------

    def heartbeat(self, state: str) -> None:
        """Tell every connection the feed's state and step (also proves the connection is alive)."""
        self.fanout.heartbeat(
            protocol.encode(protocol.heartbeat_frame(feed=state, step=self.store.step, session=self.store.session))
        )

    async def _heartbeats(self) -> None:
        started = self.clock.now()
        beats = Heartbeats(self.heartbeat_s, started_at=started, announced=LIVE)
        woke = started
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            now, woke_before = self.clock.now(), woke
            woke = now
            if (lag := now - woke_before - WATCH_EVERY_S) > WATCH_EVERY_S:
                self.follower.excuse(lag, now)  # the loop was busy: that time is ours, not the feed's
            state = self.follower.state(now)
            if state == INTERRUPTED:
                self._collect(now)  # no broadcasts to wait for
            if (beat := beats.due(state, now)) is None:
                continue
            try:
                self.heartbeat(beat.state)  # first: nothing below may hold it up
            except Exception:
                log.exception("heartbeat failed")
            if beat.changed and beat.state == INTERRUPTED:
                if (last := self.follower.last_batch_at) >= started:
                    log.warning("quote feed interrupted: no batch for %.1f s", now - last)
                else:  # never a batch (its clock's zero, or an excuse past it): not the machine's uptime
                    log.warning("quote feed interrupted: no batch for %.1f s, none yet since start", now - started)
                # Batches stopped while Redis answers: the market may be down,
                # or our membership lost (a Redis restart empties the group).
                self.follower.resync()
            elif beat.changed:
                log.info("quote feed live again")

    def _collect_soon(self) -> None:
        """After a broadcast: collect once the loop has flushed what was buffered (Twisted writes on its next turns)."""
        if self._collect_timer is None and self.collections.active:
            self._collect_timer = self.clock.call_at(self.clock.now() + COLLECT_AFTER_S, self._collect_due)

    def _collect_due(self) -> None:
        self._collect_timer = None
        self._collect(self.clock.now())

    def _collect(self, now: float) -> None:
        took_ms = self.collections.between_broadcasts(now)
        if took_ms is not None:
            log.info("full garbage collection between broadcasts: %.0f ms", took_ms)

    async def close(self) -> None:
        """Stop following the feed (tests; a web process simply exits)."""
        if self._collect_timer is not None:
            self._collect_timer.cancel()
            self._collect_timer = None
        self.collections.hand_back()
        await self.follower.close()
        tasks, self._tasks = self._tasks, []
        # Cancel until done: on Python 3.11 a cancellation that lands while a
        # wait_for inside redis-py completes can be swallowed (ticker/runtime/cancellation.py;
        # the follower's loops check for that too, this is the second guard).
        for task in tasks:
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, QuoteHub] = weakref.WeakKeyDictionary()


async def get_hub(wait_s: float | None = READY_TIMEOUT_S) -> QuoteHub:
    """The hub of the running event loop (one per web process), started and ready; FeedUnavailable after ``wait_s``."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        # Twelve market steps without a batch (3 s at the default 250 ms) is not a slow step any more.
        stale_after_s = max(3.0, 12 * settings.MARKET_INTERVAL_MS / 1000)
        hub = _hubs[loop] = QuoteHub(
            get_channel_layer(),
            stale_after_s=stale_after_s,
            heartbeat_s=settings.TICKER_HEARTBEAT_S,
            compress_min_bytes=settings.TICKER_WS_COMPRESS_MIN_BYTES,
        )
        hub.collections.take_over()
        watch_figures(hub)
    return await hub.ready(wait_s)


async def close_hub() -> None:
    """Stop the running event loop's hub, if one was started (tests: each test's loop gets a fresh hub)."""
    with contextlib.suppress(RuntimeError):
        hub = _hubs.pop(asyncio.get_running_loop(), None)
        if hub is not None:
            await hub.close()
