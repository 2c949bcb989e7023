"""One subscription to the feed per web process, fanned out to its connections.

The tutorial design puts every WebSocket consumer in a channel-layer group,
so each market step costs one Redis message, one channel-layer receive and
one consumer dispatch per client (channels_redis's core layer also drops
messages silently once a channel holds ``capacity`` of them). Here each web
process holds ONE channel in the ``quotes`` group; its hub receives each
batch once, keeps the latest quote of every symbol, encodes each distinct
frame once per step and hands the text to the connections that want it.
Any number of web processes still share the feed through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from . import daphne_support, heap, protocol, selectors

log = logging.getLogger(__name__)

# Re-join the group well inside the layer's group_expiry (settings), so a
# live process never ages out while a dead one does.
REJOIN_EVERY_S = 60
RETRY_MIN_S, RETRY_MAX_S = 0.2, 2.0
# Every connection gets a heartbeat frame this often, and at once when the
# feed's state changes (docs/protocol.md, "Heartbeats and feed state").
HEARTBEAT_S = 5.0
WATCH_EVERY_S = 0.5
# A full collection waits this long after a broadcast: the loop first writes
# out what Twisted buffered and what SSE streams queued (ticker/heap.py).
COLLECT_AFTER_S = 0.02
LIVE, INTERRUPTED = "live", "interrupted"


class RateCap:
    """A connection's ``max_rate``: at most one quotes frame per interval.

    Between two frames the latest quote of each symbol wins (conflation);
    a frame that folded several updates of a symbol says ``"conflated":
    true``, so the client knows its seq jumps are not losses.
    """

    def __init__(self, max_rate: float):
        self.interval = 1 / max_rate
        self.next_at = 0.0
        self.pending: dict[str, dict[str, Any]] = {}
        self.merged = False
        self.timer: asyncio.TimerHandle | None = None

    def hold(self, quotes: list[dict[str, Any]]) -> None:
        for quote in quotes:
            self.merged |= quote["symbol"] in self.pending
            self.pending[quote["symbol"]] = quote

    def forget(self, symbols: frozenset[str] | None) -> None:
        """Drop held quotes a fresh snapshot has just superseded (None: all)."""
        if symbols is None:
            self.pending.clear()
        else:
            for symbol in symbols:
                self.pending.pop(symbol, None)

    def take(self, key: frozenset[str] | None, step: int, now: float) -> str | None:
        """The frame to send now (held quotes still subscribed to), or None; starts the next interval."""
        quotes = [q for s, q in sorted(self.pending.items()) if key is None or s in key]
        frame = protocol.quotes_frame(quotes, step=step)
        if self.merged:
            frame["conflated"] = True
        self.pending.clear()
        self.merged = False
        if not quotes:
            return None
        self.next_at = now + self.interval
        return protocol.encode(frame)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Subscriber(Protocol):
    """What the hub needs of a connection (QuoteConsumer implements it)."""

    subscription: frozenset[str] | None  # None: every symbol
    # True while the client is not reading and its buffers are full: the hub
    # sends it nothing, marks it ``behind``, and later sends a snapshot.
    backlogged: bool
    behind: bool
    cap: RateCap | None  # max_rate, if the client asked for one
    # Under daphne, a WebSocket's direct path to its socket: the hub writes
    # each frame, framed once per step, without awaiting send_frame.
    wire: daphne_support.Wire | None

    async def send_frame(self, text: str, step: int, event: str = "quotes") -> None: ...


def _load_latest() -> tuple[int, list[tuple[dict[str, Any], int]]]:
    """The stored market: its last step, and each symbol's quote with the step it last changed in."""
    stocks = list(selectors.listed_stocks())
    return max((s.step for s in stocks), default=0), [(protocol.quote(selectors.tick_of(s)), s.step) for s in stocks]


def _split(loaded: tuple[int, list[tuple[dict[str, Any], int]]]) -> tuple[int, list[dict], list[int]]:
    step, pairs = loaded
    return step, [quote for quote, _ in pairs], [changed for _, changed in pairs]


class QuoteHub:
    """The process's view of the feed: latest quotes and who wants which."""

    def __init__(self, channel_layer, *, stale_after_s: float = 3.0, heartbeat_s: float = HEARTBEAT_S):
        self.layer = channel_layer
        # The market publishes every step, changed or not; this long without
        # a batch and the feed counts as interrupted (market down, or our
        # group membership lost) even while Redis still answers.
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.connected = False  # receiving from the channel layer
        self.last_batch_at = 0.0
        self.announced = LIVE
        self.latest: dict[str, dict[str, Any]] = {}
        # The market step in which each symbol last changed (long-poll, SSE resume).
        self.changed_step: dict[str, int] = {}
        self.step = 0
        # Replaced by a fresh Event after every step that changed something.
        self._stepped = asyncio.Event()
        self.subscribers: dict[Subscriber, None] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._watch_task: asyncio.Task | None = None
        self._resync_task: asyncio.Task | None = None
        self._flushes: set[asyncio.Task] = set()  # RateCap flushes in flight (kept referenced)
        self.channel: str | None = None  # this process's channel in the quotes group
        # Full garbage collections between broadcasts (ticker/heap.py); only
        # the process's own hub (get_hub) takes them over.
        self.collections = heap.FullCollections()
        self._collect_timer: asyncio.TimerHandle | None = None

    @property
    def feed(self) -> str:
        """LIVE while batches arrive from the channel layer; INTERRUPTED otherwise."""
        if not self.connected:
            return INTERRUPTED
        quiet = asyncio.get_running_loop().time() - self.last_batch_at
        return LIVE if quiet <= self.stale_after_s else INTERRUPTED

    async def ready(self) -> QuoteHub:
        """Start the hub on first use; return once it holds a snapshot."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="quote-hub")
            self._watch_task = asyncio.create_task(self._watch(), name="quote-hub-heartbeat")
        await self._ready.wait()
        return self

    def attach(self, subscriber: Subscriber) -> None:
        self.subscribers[subscriber] = None

    def detach(self, subscriber: Subscriber) -> None:
        self.subscribers.pop(subscriber, None)
        if subscriber.cap is not None:
            subscriber.cap.cancel()

    def delist(self, symbols) -> None:
        """Forget symbols the operator deactivated: no longer in snapshots, not subscribable."""
        for symbol in symbols:
            self.latest.pop(symbol, None)
            self.changed_step.pop(symbol, None)

    async def reload(self, loaded, *, resnapshot: bool = False) -> None:
        """Take the stored market as the truth (start, or back after an outage).

        With ``resnapshot`` (back after an outage) every connection gets a
        fresh snapshot of its symbols: while the feed was away seq moved on by
        several steps, and a snapshot makes each client whole in one frame
        instead of a gap and a resync round trip per client.
        """
        step, quotes, steps = _split(loaded)
        self.delist(set(self.latest) - {q["symbol"] for q in quotes})
        if not resnapshot:
            await self.publish(step, quotes, steps)
            return
        self.apply(step, quotes, steps)
        await self._fan_out(self.step, "snapshot", self._snapshot_text)

    def known(self, symbol: str) -> bool:
        return symbol in self.latest

    def snapshot(self, symbols: frozenset[str] | None) -> list[dict[str, Any]]:
        """Latest quotes for ``symbols`` (None: all), by symbol."""
        if symbols is None:
            return [self.latest[s] for s in sorted(self.latest)]
        return [self.latest[s] for s in sorted(symbols) if s in self.latest]

    def changed_since(self, since: int, symbols: frozenset[str] | None) -> list[dict[str, Any]]:
        """The latest quote of every symbol (all, or those named) that changed after step ``since``."""
        return [q for q in self.snapshot(symbols) if self.changed_step.get(q["symbol"], 0) > since]

    async def wait_for_change(self, since: int, symbols: frozenset[str] | None, wait_s: float) -> list[dict]:
        """Wait up to ``wait_s`` seconds for a change after ``since``; return the changed quotes, or []."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while not (changed := self.changed_since(since, symbols)):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stepped.wait(), remaining)
        return changed

    def apply(self, step: int, quotes: list[dict[str, Any]], steps: list[int] | None = None) -> list[dict[str, Any]]:
        """Record quotes newer than what the hub holds; return just those.

        A quote whose ``seq`` is not above the held one is a duplicate (for
        example a batch that was queued while the hub loaded its snapshot).
        ``steps`` gives each quote's own change step when it is not ``step``.
        """
        fresh = []
        for i, quote in enumerate(quotes):
            held = self.latest.get(quote["symbol"])
            if held is None or quote["seq"] > held["seq"]:
                self.latest[quote["symbol"]] = quote
                self.changed_step[quote["symbol"]] = steps[i] if steps else step
                fresh.append(quote)
        self.step = max(self.step, step)
        if fresh:
            self._stepped.set()
            self._stepped = asyncio.Event()
        return fresh

    async def publish(self, step: int, quotes: list[dict[str, Any]], steps: list[int] | None = None) -> None:
        """Apply one batch and send each subscriber at most one frame for it."""
        fresh = self.apply(step, quotes, steps)
        if not fresh:
            return

        def render(key):
            wanted = fresh if key is None else [q for q in fresh if q["symbol"] in key]
            return protocol.encode(protocol.quotes_frame(wanted, step=step)) if wanted else None

        await self._fan_out(step, "quotes", render, fresh)

    async def heartbeat(self) -> None:
        """Tell every connection the feed's state and step (also proves the connection is alive)."""
        self.announced = feed = self.feed
        text = protocol.encode(protocol.heartbeat_frame(feed=feed, step=self.step))
        await self._fan_out(self.step, "heartbeat", lambda key: text)

    async def _fan_out(self, step: int, event: str, render, fresh: list[dict] | None = None) -> None:
        """Send ``render(subscription)`` to every subscriber, encoded once per distinct subscription.

        ``fresh`` (a quotes batch) goes through the rate cap of subscribers
        that have one: held, or sent conflated with what was held.
        """
        # Taken before any await: a subscriber that attaches while this batch
        # goes out got it in its snapshot already and must not get it twice.
        targets = list(self.subscribers)
        encoded: dict[frozenset[str] | None, str | None] = {}
        snapshots: dict[frozenset[str] | None, str | None] = {}
        framed: dict[str, Any] = {}  # text -> its WebSocket frame, for subscribers with a wire
        for subscriber in targets:
            key = subscriber.subscription
            if subscriber.backlogged:
                # Not reading: queue nothing more for it (memory stays bounded,
                # the others are not held up); it gets a snapshot later.
                subscriber.behind = True
                continue
            if subscriber.behind:
                # Reading again: the latest price of each symbol, not a backlog.
                if key not in snapshots:
                    snapshots[key] = self._snapshot_text(key)
                text, kind = snapshots[key], "snapshot"
                subscriber.behind = False
            elif fresh is not None and subscriber.cap is not None:
                await self._capped(subscriber, key, fresh, step)
                continue
            elif subscriber.wire is not None:
                # The common case, made cheap: no coroutine, no per-client framing.
                if key not in encoded:
                    encoded[key] = render(key)
                if (text := encoded[key]) is not None:
                    if event == "snapshot" and subscriber.cap is not None:
                        subscriber.cap.forget(None)  # what it held is older than this snapshot
                    self._write(subscriber, text, framed)
                continue
            else:
                if key not in encoded:
                    encoded[key] = render(key)
                text, kind = encoded[key], event
            if text is not None:
                if kind == "snapshot" and subscriber.cap is not None:
                    subscriber.cap.forget(None)  # what it held is older than this snapshot
                if not self._write(subscriber, text, framed):
                    await self._send(subscriber, text, step, kind)

    async def _capped(self, subscriber: Subscriber, key, fresh: list[dict], step: int) -> None:
        cap = subscriber.cap
        cap.hold(fresh if key is None else [q for q in fresh if q["symbol"] in key])
        now = asyncio.get_running_loop().time()
        if now < cap.next_at:
            if cap.pending and cap.timer is None:
                cap.timer = asyncio.get_running_loop().call_at(cap.next_at, self._flush_later, subscriber)
            return
        text = cap.take(key, step, now)
        if text is not None and not self._write(subscriber, text, {}):
            await self._send(subscriber, text, step, "quotes")

    def _flush_later(self, subscriber: Subscriber) -> None:
        """The interval ran out with quotes held and no step since: send them now."""
        subscriber.cap.timer = None
        task = asyncio.ensure_future(self._flush(subscriber))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, subscriber: Subscriber) -> None:
        cap = subscriber.cap
        if cap is None or subscriber not in self.subscribers:
            return
        if subscriber.backlogged:
            subscriber.behind = True  # it gets a snapshot once it reads again
            return
        text = cap.take(subscriber.subscription, self.step, asyncio.get_running_loop().time())
        if text is not None and not self._write(subscriber, text, {}):
            await self._send(subscriber, text, self.step, "quotes")

    def _write(self, subscriber: Subscriber, text: str, framed: dict[str, Any]) -> bool:
        """Write ``text`` down the subscriber's wire, framed once per distinct text; False if it has none."""
        wire = subscriber.wire
        if wire is None:
            return False
        frame = framed.get(text)
        if frame is None:
            frame = framed[text] = daphne_support.prepare(text)
        try:
            wire.write(frame)
        except Exception:  # one broken connection must not stop the others
            log.exception("writing a frame failed; dropping that subscriber")
            self.detach(subscriber)
        return True

    async def _send(self, subscriber: Subscriber, text: str, step: int, event: str) -> None:
        try:
            await subscriber.send_frame(text, step, event)
        except Exception:  # one broken connection must not stop the others
            log.exception("sending a frame failed; dropping that subscriber")
            self.detach(subscriber)

    def _snapshot_text(self, key: frozenset[str] | None) -> str | None:
        if key is not None and not key:
            return None
        return protocol.encode(protocol.snapshot_frame(self.snapshot(key), step=self.step))

    def _collect_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """After a broadcast: collect once the loop has flushed what was buffered (Twisted writes on its next turns)."""
        if self._collect_timer is None:
            self._collect_timer = loop.call_later(COLLECT_AFTER_S, self._collect_due)

    def _collect_due(self) -> None:
        self._collect_timer = None
        self._collect(asyncio.get_running_loop().time())

    def _collect(self, now: float) -> None:
        """A full garbage collection, if one is due (ticker/heap.py)."""
        took_ms = self.collections.between_broadcasts(now)
        if took_ms is not None:
            log.info("full garbage collection between broadcasts: %.0f ms", took_ms)

    async def _watch(self) -> None:
        """Heartbeats every ``heartbeat_s``, and one at once when the feed's state changes."""
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            feed = self.feed
            if feed == INTERRUPTED:
                self._collect(loop.time())  # no broadcasts to wait for
            changed = feed != self.announced
            if not changed and loop.time() - last_beat < self.heartbeat_s:
                continue
            last_beat = loop.time()
            try:
                await self.heartbeat()  # first: nothing below may hold it up
            except Exception:
                log.exception("heartbeat failed")
            if changed and feed == INTERRUPTED:
                log.warning("quote feed interrupted: no batch for %.1f s", loop.time() - self.last_batch_at)
                if self.connected and (self._resync_task is None or self._resync_task.done()):
                    # Batches stopped while Redis answers: the market may be
                    # down, or our membership lost (a Redis restart empties
                    # the group). Join again and take the database's word.
                    self._resync_task = asyncio.create_task(self._join_again())
            elif changed:
                log.info("quote feed live again")

    async def _join_again(self) -> None:
        """Re-join the group, then reload from the database and resnapshot: batches may have been missed."""
        if self.channel is None or self.layer is None:
            return
        try:
            async with asyncio.timeout(RETRY_MAX_S * 2):
                await self.layer.group_add(protocol.QUOTES_GROUP, self.channel)
                await self.reload(await database_sync_to_async(_load_latest)(), resnapshot=True)
        except Exception as exc:
            log.warning("could not join the quotes group again: %s", exc)

    async def _run(self) -> None:
        """Join the feed, load the snapshot, then apply batches until cancelled."""
        delay = RETRY_MIN_S
        rejoin: asyncio.Task | None = None
        loop = asyncio.get_running_loop()
        recovering = False
        while True:
            self.channel = None
            try:
                if self.layer is not None:
                    # The default prefix matters: channels_redis receives every
                    # process-local channel through one shared Redis key, and a
                    # different prefix would wait behind the consumers' receives.
                    self.channel = await self.layer.new_channel()
                    await self.layer.group_add(protocol.QUOTES_GROUP, self.channel)
                    rejoin = asyncio.create_task(self._rejoin(self.channel))
                # Joined first, loaded second: a batch published in between is
                # queued on our channel and deduplicated by seq in apply().
                await self.reload(await database_sync_to_async(_load_latest)(), resnapshot=recovering)
                self.connected, self.last_batch_at, recovering = True, loop.time(), False
                self._ready.set()
                delay = RETRY_MIN_S
                if self.layer is None:
                    log.warning("no channel layer configured: quotes will not update live")
                    self.connected = False
                    return
                while True:
                    message = await self.layer.receive(self.channel)
                    if message.get("type") == protocol.BATCH_EVENT:
                        self.last_batch_at = loop.time()
                        self.delist(message.get("delisted", ()))
                        await self.publish(message["step"], message["quotes"])
                        self._collect_soon(loop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected, recovering = False, self._ready.is_set()
                log.warning("quote feed interrupted (%s); retrying in %.1fs", exc, delay)
                if self.channel is not None and self.layer is not None:
                    # A new channel is made on retry: leave no second membership behind.
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1):
                            await self.layer.group_discard(protocol.QUOTES_GROUP, self.channel)
                # Serve snapshots from the database even while Redis is away.
                if not self._ready.is_set():
                    try:
                        self.apply(*_split(await database_sync_to_async(_load_latest)()))
                        self._ready.set()
                    except Exception:
                        log.exception("could not load quotes from the database either")
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            finally:
                if rejoin is not None:
                    rejoin.cancel()
                    rejoin = None

    async def close(self) -> None:
        """Stop following the feed (tests; a web process simply exits)."""
        for helper in (self._watch_task, self._resync_task):
            if helper is not None and not helper.done():
                helper.cancel()
                await asyncio.wait({helper}, timeout=1)
        self._watch_task = self._resync_task = None
        if self._collect_timer is not None:
            self._collect_timer.cancel()
            self._collect_timer = None
        self.collections.hand_back()
        task, self._task = self._task, None
        # Cancel until it is done: on Python 3.11 a cancellation that lands
        # while a wait_for inside redis-py completes can be swallowed, and the
        # task would go back to waiting for a message that never comes.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1)

    async def _rejoin(self, channel: str) -> None:
        while True:
            await asyncio.sleep(REJOIN_EVERY_S)
            try:
                await self.layer.group_add(protocol.QUOTES_GROUP, channel)
            except Exception as exc:
                log.warning("could not refresh the quotes group membership: %s", exc)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, QuoteHub] = weakref.WeakKeyDictionary()


async def get_hub() -> QuoteHub:
    """The hub of the running event loop (one per web process), started and ready."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        # Twelve market steps without a batch (3 s at the default 250 ms) is not a slow step any more.
        stale_after_s = max(3.0, 12 * settings.MARKET_INTERVAL_MS / 1000)
        hub = _hubs[loop] = QuoteHub(
            get_channel_layer(), stale_after_s=stale_after_s, heartbeat_s=settings.TICKER_HEARTBEAT_S
        )
        hub.collections.take_over()
    return await hub.ready()
