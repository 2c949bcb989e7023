"""Fan-out: each connection's delivery state, owned here, and one frame per step per connection.

Every job here is synchronous: an outlet (ticker/edge/server/) takes a frame
without awaiting, so nothing can attach, subscribe or detach in the middle
of a broadcast, and a client that does not read holds up no other.

A step's frames are assembled, not encoded per connection: each fresh quote
is encoded once (``Batch``), and a connection's frame is those pieces joined
behind the frame's head; connections with the same interest share one frame,
and the daphne outlet frames each frame once (ticker/edge/server/). So a client
on its own watchlist costs a few dictionary look-ups and a join more than one
on everything, not a filter of the whole step and a JSON encode of its own
(issue 11; docs/benchmarks.md, "Personal watchlists").

The pieces and the delta format, and which frames made for one connection are
compressed, are ticker/hub/batch.py.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from ticker.hub.batch import Batch, CompressedSingles
from ticker.hub.clock import Clock, Timer
from ticker.hub.delivery import Delivery
from ticker.hub.interest import EVERYTHING, NOTHING, Interest
from ticker.hub.movers import MoversBoard
from ticker.hub.outlet import Outlet
from ticker.hub.ratecap import RateCap
from ticker.hub.sent import Sent
from ticker.hub.store import QuoteStore
from ticker.wire import protocol
from ticker.wire.frames import Frame

log = logging.getLogger(__name__)
_UNSEEN = object()


class Fanout:
    """Sends each broadcast to every attached connection, each distinct frame encoded once."""

    def __init__(
        self,
        store: QuoteStore,
        clock: Clock,
        on_broadcast: Callable[[], None] = lambda: None,
        *,
        compress_min_bytes: int = 256,
    ):
        self.store = store
        self.clock = clock
        self.on_broadcast = on_broadcast  # called after every quotes broadcast (the hub schedules a collection)
        self.deliveries: dict[Outlet, Delivery] = {}
        self.movers = MoversBoard()
        self.movers_followers = 0  # connections that follow movers
        self._movers_timer: Timer | None = None
        self.sent = Sent()  # what was handed to connections, for /metrics and the operations view
        self.singles = CompressedSingles(compress_min_bytes)  # which one-connection frames are compressed
        # Frames to write right after a connection's next frame, in the same write: a step's alert fires, put
        # here by the personal router before the step's quotes go out (ticker/hub/personal.py, ``ride``).
        self.riders: dict[Outlet, list[Frame]] = {}

    def __len__(self) -> int:
        return len(self.deliveries)

    # -- one connection -------------------------------------------------

    def attach(self, outlet: Outlet, interest: Interest = NOTHING, *, delta: bool = False) -> Delivery:
        """Called when a connection starts following; it gets every broadcast from now on (``delta``: as deltas)."""
        delivery = self.deliveries[outlet] = Delivery(outlet, interest, delta)
        return delivery

    def detach(self, outlet: Outlet) -> None:
        """Called when a connection goes away or is being closed; safe to call twice."""
        delivery = self.deliveries.pop(outlet, None)
        if delivery is None:
            return
        if delivery.cap is not None:
            delivery.cap.cancel()
        if delivery.movers:
            self.movers_followers -= 1

    def subscribe(self, outlet: Outlet, symbols: Iterable[str] | None) -> None:
        """Add symbols (None: every symbol, those listed later too) and send their snapshot.

        Snapshot and subscription change happen together, so the next
        broadcast continues exactly where the snapshot ends.
        """
        if (delivery := self.deliveries.get(outlet)) is None:
            return  # dropped after a failed write: the connection is going away
        added = EVERYTHING if symbols is None else Interest(False, frozenset(symbols))
        delivery.interest = EVERYTHING if symbols is None else delivery.interest.plus(added.symbols)
        if delivery.cap is not None:
            delivery.cap.forget(added)  # the snapshot below is newer
        if not added.empty:
            self._write(delivery, self._snapshot(added))

    def unsubscribe(self, outlet: Outlet, symbols: Iterable[str] | None) -> None:
        """Stop symbols (None: all of them)."""
        if (delivery := self.deliveries.get(outlet)) is None:
            return
        delivery.interest = NOTHING if symbols is None else delivery.interest.minus(symbols)

    def set_max_rate(self, outlet: Outlet, max_rate: float | None) -> None:
        """A new cap keeps what the old one held; lifting the cap sends what it held at once."""
        if (delivery := self.deliveries.get(outlet)) is None:
            return
        old = delivery.cap
        if old is None:
            delivery.cap = None if max_rate is None else RateCap(max_rate)
            return
        delivery.cap = old.retimed(max_rate)
        if delivery.cap is None:
            if (payload := old.take(delivery.interest, self.store.step, 0.0)) is not None:
                self._write(delivery, Frame(step=self.store.step, payload=payload))
        elif delivery.cap.pending:
            delivery.cap.timer = self.clock.call_at(self.clock.now(), lambda: self._flush(delivery))

    # -- movers ---------------------------------------------------------

    def follow_movers(self, outlet: Outlet, count: int) -> None:
        """Start (``count`` of each: an immediate movers frame, then one a second at most while they change),
        change or stop (0) a connection's movers."""
        if (delivery := self.deliveries.get(outlet)) is None:
            return
        self.movers_followers += bool(count) - bool(delivery.movers)
        delivery.movers = count
        if not count:
            delivery.movers_shown = None
            return
        board = self.latest_movers()
        delivery.movers_shown = board.key(count)
        self._write(delivery, board.frame(count))
        self._movers_soon()

    def latest_movers(self) -> MoversBoard:
        """The movers as of at most a second ago (worked out now if the market changed since and it is time)."""
        return self.movers.latest(self.store.quotes, self.store.step, self.clock.now())

    # -- broadcasts -----------------------------------------------------

    def quotes(self, step: int, fresh: list[dict[str, Any]], previous: dict[str, dict[str, Any]] | None = None) -> None:
        """One market step's fresh quotes (``previous``: the quotes they replaced, for deltas): at most one frame
        per connection (or held by its rate cap)."""
        started = time.perf_counter()
        batch = Batch(step, fresh, previous)
        deliveries = list(self.deliveries.values())
        self.singles.renew()
        # A frame is kept for the rest of the step only when another connection has the same interest and
        # format: a personal watchlist's frame is written and dropped at once, so the next one reuses its memory
        # (kept, 2,000 personal frames were ~15 MB allocated and freed per step; py-spy showed the
        # assembly at 16% of busy time, docs/benchmarks.md, "Personal watchlists").
        shared = Counter((d.interest, d.delta) for d in deliveries)
        frames: dict[tuple[Interest, bool], tuple[Frame, int, int] | None] = {}
        snapshots: dict[Interest, Frame | None] = {}
        # Counted here and added once (ticker/hub/sent.py), not per frame: this loop is the hot path.
        written = nbytes = updates = 0
        for delivery in deliveries:
            if self._held_back(delivery, snapshots):
                continue
            if delivery.cap is not None:
                self._capped(delivery, batch)
                continue
            key = (delivery.interest, delivery.delta)
            if (made := frames.get(key, _UNSEEN)) is _UNSEEN:
                payload = batch.payload(*key)
                if payload is None:
                    made = None
                elif shared[key] > 1:
                    made = frames[key] = (Frame(step=step, payload=payload), len(payload), batch.picked)
                else:
                    made = (self._single(delivery, step, payload), len(payload), batch.picked)
            if made is not None:
                self._put(delivery, made[0])
                written += 1
                nbytes += made[1]
                updates += made[2]
        self.sent.add_many("quotes", written, nbytes, updates)
        self.sent.fanned_out(time.perf_counter() - started)
        self.movers.stale = True
        self._movers_soon()
        self.on_broadcast()

    def delisted(self, step: int, symbols: Iterable[str]) -> None:
        """The market stopped listing ``symbols``: each connection that wanted some is told, and they leave its
        subscription (a connection on every symbol keeps wanting symbols listed later, a relisting too).

        Written even to a backlogged connection: a delisting is rare and small, and a client held back would
        otherwise keep a row the snapshot it gets later no longer mentions.
        """
        gone = sorted(set(symbols))
        if not gone:
            return
        frames: dict[tuple[str, ...], Frame] = {}
        for delivery in list(self.deliveries.values()):
            interest = delivery.interest
            if not (mine := tuple(s for s in gone if interest.wants(s))):
                continue
            if not interest.everything:
                delivery.interest = interest.minus(mine)
            if delivery.cap is not None:
                delivery.cap.forget(Interest(False, frozenset(mine)))
            if (frame := frames.get(mine)) is None:
                frame = frames[mine] = Frame(
                    protocol.encode(protocol.delisted_frame(list(mine), step=step)), step, "delisted"
                )
            self._write(delivery, frame)
        self.movers.stale = True
        self._movers_soon()

    def resnapshot(self) -> None:
        """Back after an outage: every connection gets a snapshot of its symbols instead of a gap."""
        snapshots: dict[Interest, Frame | None] = {}
        for delivery in list(self.deliveries.values()):
            delivery.behind = True
            self._held_back(delivery, snapshots)
        self.movers.stale = True
        self._movers_soon()

    def heartbeat(self, text: str) -> None:
        """The same heartbeat frame to every connection that is reading."""
        frame = Frame(text, self.store.step, "heartbeat")
        snapshots: dict[Interest, Frame | None] = {}
        written = 0
        for delivery in list(self.deliveries.values()):
            if not self._held_back(delivery, snapshots):
                self._put(delivery, frame)
                written += 1
        self.sent.add_many("heartbeat", written, written * len(frame.payload))

    # -- internals --------------------------------------------------------

    def _held_back(self, delivery: Delivery, snapshots: dict[Interest, Frame | None]) -> bool:
        """True when this broadcast is not for the connection: not reading, or behind and sent a snapshot instead."""
        if delivery.outlet.backlogged:
            if not delivery.behind:
                self.sent.held_back += 1
            delivery.behind = True  # queue nothing more for it: memory stays bounded
            return True
        if not delivery.behind:
            return False
        delivery.behind = False
        self.sent.resnapshotted += 1
        if delivery.cap is not None:
            delivery.cap.forget()  # what it held is older than this snapshot
        if delivery.interest not in snapshots:
            snapshots[delivery.interest] = self._snapshot(delivery.interest)
        if (frame := snapshots[delivery.interest]) is not None:
            self._write(delivery, frame)
        return True

    def _snapshot(self, interest: Interest) -> Frame | None:
        if interest.empty:
            return None
        step = self.store.step
        return Frame(
            protocol.encode(
                protocol.snapshot_frame(self.store.snapshot(interest), step=step, session=self.store.session)
            ),
            step,
            "snapshot",
        )

    def _capped(self, delivery: Delivery, batch: Batch) -> None:
        cap = delivery.cap
        cap.hold(batch.wanted(delivery.interest), batch.pieces)
        now = self.clock.now()
        if now < cap.next_at:
            if cap.pending and cap.timer is None:
                cap.timer = self.clock.call_at(cap.next_at, lambda: self._flush(delivery))
            return
        if (payload := cap.take(delivery.interest, batch.step, now)) is not None:
            self._write(delivery, self._single(delivery, batch.step, payload))

    def _flush(self, delivery: Delivery) -> None:
        """The interval ran out with quotes held and no step since: send them now."""
        cap = delivery.cap
        if cap is None or self.deliveries.get(delivery.outlet) is not delivery:
            return
        cap.timer = None
        if delivery.outlet.backlogged:
            if not delivery.behind:
                self.sent.held_back += 1
            delivery.behind = True  # it gets a snapshot once it reads again
            return
        step = self.store.step
        if (payload := cap.take(delivery.interest, step, self.clock.now())) is not None:
            self._write(delivery, self._single(delivery, step, payload))

    def _movers_soon(self) -> None:
        """While someone follows movers and the market changed: send them when their second is up."""
        if self.movers_followers and self.movers.stale and self._movers_timer is None:
            self._movers_timer = self.clock.call_at(self.movers.due_at(self.clock.now()), self._send_movers)

    def _send_movers(self) -> None:
        """Each follower whose movers changed gets the frame of its count (one frame per count, shared)."""
        self._movers_timer = None
        if not self.movers_followers:
            return
        board = self.latest_movers()
        for delivery in list(self.deliveries.values()):
            if not delivery.movers or delivery.outlet.backlogged:
                continue  # held back: it gets the movers of the next change once it reads again
            if (shown := board.key(delivery.movers)) != delivery.movers_shown:
                delivery.movers_shown = shown
                self._write(delivery, board.frame(delivery.movers))
        self._movers_soon()  # changed again meanwhile (a timer that fired a hair early): the next second

    def _single(self, delivery: Delivery, step: int, payload: bytes) -> Frame:
        """A quotes frame made for this connection alone: compressed while the step's budget lasts."""
        return Frame(step=step, payload=payload, compress=self.singles.allows(delivery.outlet, payload))

    def _write(self, delivery: Delivery, frame: Frame) -> None:
        """Write one frame and count it (broadcasts count theirs in one go and call ``_put``)."""
        self.sent.add(frame.kind, len(frame.payload))
        self._put(delivery, frame)

    def _put(self, delivery: Delivery, frame: Frame) -> None:
        try:
            if self.riders and (riders := self.riders.pop(delivery.outlet, None)):
                delivery.outlet.write_all([frame, *riders])
            else:
                delivery.outlet.write(frame)
        except Exception:  # one broken connection must not stop the others
            log.exception("writing a frame failed; dropping that connection")
            self.detach(delivery.outlet)
