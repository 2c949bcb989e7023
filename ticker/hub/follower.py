"""Following the market's feed for one web process: group membership, receiving batches, resync, liveness.

The feed is the stream of ``quote.batch`` messages the market sends to the
channel-layer group ``quotes`` once per step (ticker/market/loop.py). Each web
process holds one channel in that group; this module keeps it there and
says whether the feed is live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ticker.hub.source import FeedSource, Verdict
from ticker.market.selectors import Listed
from ticker.runtime.cancellation import stop_if_cancelled
from ticker.wire import protocol
from ticker.wire.personal import PERSONAL_EVENT, PERSONAL_GROUP

log = logging.getLogger(__name__)

# Re-join the group well inside the layer's group_expiry (settings), so a
# live process never ages out while a dead one does.
REJOIN_EVERY_S = 60
RETRY_MIN_S, RETRY_MAX_S = 0.2, 2.0
LIVE, INTERRUPTED = "live", "interrupted"
# The groups this process's one channel belongs to: the market's batches, and personal events (issue 23),
# which arrive on the same channel so a web process holds one pending receive, not two.
GROUPS = (protocol.QUOTES_GROUP, PERSONAL_GROUP)


def _ignore(message: dict[str, Any]) -> None:
    pass


class FeedFollower:
    """Joins the quotes group, receives batches until cancelled, and recovers from outages.

    ``load`` reads the stored market; ``on_load(listed, resnapshot)`` is
    called with it on start and after an outage (``resnapshot`` then true:
    batches may have been missed); ``on_batch(message, new_leader)`` is called
    for every batch of this site's current market (``source`` drops the rest),
    and returns False if the batch does not continue what is held, when the
    stored market is loaded again instead. ``on_personal(message)`` gets every ``personal.events``
    message (ticker/hub/personal.py routes it); it is checked only after the batch test, so the batch's
    path costs what it did.
    """

    def __init__(
        self,
        layer,
        *,
        stale_after_s: float,
        load: Callable[[], Awaitable[Listed]],
        on_load: Callable[[Listed, bool], None],
        on_batch: Callable[[dict[str, Any]], None],
        on_personal: Callable[[dict[str, Any]], None] = _ignore,
    ):
        self.layer = layer
        # The market publishes every step, changed or not; this long without
        # a batch and the feed counts as interrupted (market down, or our
        # group membership lost) even while Redis still answers.
        self.stale_after_s = stale_after_s
        self.load, self.on_load, self.on_batch = load, on_load, on_batch
        self.on_personal = on_personal
        self.source = FeedSource()
        self.connected = False  # receiving from the channel layer
        self.last_batch_at = 0.0
        self.channel: str | None = None  # this process's channel in the quotes group
        self.ready = asyncio.Event()  # set once a snapshot is held (from Redis and the database, or the database)
        self._resync: asyncio.Task | None = None

    def state(self, now: float) -> str:
        """LIVE while batches of the lease holder arrive from the channel layer; INTERRUPTED otherwise.

        Only a batch makes the feed live (``last_batch_at``): not a reconnect, not a reload from the database.
        """
        if not self.connected:
            return INTERRUPTED
        return LIVE if now - self.last_batch_at <= self.stale_after_s else INTERRUPTED

    def excuse(self, seconds: float, now: float) -> None:
        """The process itself could not receive for ``seconds`` (its event loop was busy): not the feed's silence.

        During a burst of connections the loop can fall seconds behind; a
        batch waiting in Redis meanwhile is not a dead market, and resyncing
        then (a Redis round trip, a database read and a snapshot to every
        client) would only add to the load.
        """
        # Never past now: a batch handled during the stall already moved last_batch_at on, and an
        # excuse that went further would postpone noticing a market that dies right after.
        self.last_batch_at = min(now, self.last_batch_at + seconds)

    def resync(self) -> None:
        """Batches stopped while Redis answers: join again and take the database's word (in the background)."""
        if self.connected and (self._resync is None or self._resync.done()):
            self._resync = asyncio.create_task(self._join_again(), name="quote-feed-resync")

    async def _join_again(self) -> None:
        if self.channel is None or self.layer is None:
            return
        try:
            async with asyncio.timeout(RETRY_MAX_S * 2):
                await self._join(self.channel)
                self.on_load(await self._load(), True)
        except Exception as exc:
            log.warning("could not join the quotes group again: %s", exc)

    async def _load(self) -> Listed:
        listed = await self.load()
        self.source.loaded(listed.market)
        return listed

    async def run(self) -> None:
        """Join the feed, load the snapshot, then hand over batches until cancelled."""
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
                    await self._join(self.channel)
                    rejoin = asyncio.create_task(self._rejoin(self.channel))
                # Joined first, loaded second: a batch published in between is
                # queued on our channel and deduplicated by seq in the store.
                self.on_load(await self._load(), recovering)
                if not self.ready.is_set():
                    # The first load only: the market gets stale_after_s for its first batch before the feed
                    # counts as interrupted. A reload after an outage proves nothing about the market (issue
                    # 20: it used to say "live" every 5 s while the market was stopped): live again only once
                    # a batch arrives.
                    self.last_batch_at = loop.time()
                self.connected, recovering = True, False
                self.ready.set()
                delay = RETRY_MIN_S
                if self.layer is None:
                    log.warning("no channel layer configured: quotes will not update live")
                    self.connected = False
                    return
                while True:
                    message = await self.layer.receive(self.channel)
                    stop_if_cancelled()
                    if message.get("type") != protocol.BATCH_EVENT:
                        if message.get("type") == PERSONAL_EVENT:
                            self.on_personal(message)
                        continue
                    verdict = self.source.judge(message)
                    if verdict in (Verdict.FOREIGN, Verdict.STALE):
                        continue  # not this site's live market: it must not make the feed look live either
                    self.last_batch_at = loop.time()
                    if not self.on_batch(message, verdict is Verdict.NEW_LEADER):
                        log.warning("the new market leader's first batch skips seq: resnapshot from the database")
                        self.on_load(await self._load(), True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected, recovering = False, self.ready.is_set()
                log.warning("quote feed interrupted (%s); retrying in %.1fs", exc, delay)
                if self.channel is not None and self.layer is not None:
                    # A new channel is made on retry: leave no second membership behind.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(self._leave(self.channel), 1)
                # Serve snapshots from the database even while Redis is away.
                if not self.ready.is_set():
                    try:
                        self.on_load(await self._load(), False)
                        self.ready.set()
                    except Exception:
                        log.exception("could not load quotes from the database either")
                stop_if_cancelled()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            finally:
                if rejoin is not None:
                    rejoin.cancel()
                    rejoin = None

    async def _rejoin(self, channel: str) -> None:
        while True:
            await asyncio.sleep(REJOIN_EVERY_S)
            try:
                await self._join(channel)
            except Exception as exc:
                log.warning("could not refresh the quotes group membership: %s", exc)
            stop_if_cancelled()

    async def _join(self, channel: str) -> None:
        for group in GROUPS:
            await self.layer.group_add(group, channel)

    async def _leave(self, channel: str) -> None:
        for group in GROUPS:
            await self.layer.group_discard(group, channel)

    async def close(self) -> None:
        if self._resync is not None and not self._resync.done():
            self._resync.cancel()
            await asyncio.wait({self._resync}, timeout=1)
        self._resync = None
