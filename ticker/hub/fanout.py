"""Fan-out: each connection's delivery state, owned here, and one frame per step per connection.

Every job here is synchronous: an outlet (ticker/server.py) takes a frame
without awaiting, so nothing can attach, subscribe or detach in the middle
of a broadcast, and a client that does not read holds up no other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from .. import protocol
from ..server import Frame, Outlet
from .clock import Clock
from .interest import EVERYTHING, NOTHING, Interest
from .ratecap import RateCap
from .store import QuoteStore

log = logging.getLogger(__name__)


class Delivery:
    """What the hub knows of one connection: what it wants, its rate cap, and whether it fell behind."""

    __slots__ = ("outlet", "interest", "cap", "behind")

    def __init__(self, outlet: Outlet, interest: Interest):
        self.outlet = outlet
        self.interest = interest
        self.cap: RateCap | None = None  # max_rate, if the client asked for one
        # Set while the client does not read (its outlet is backlogged): it is
        # sent nothing, and once it reads again, a snapshot instead of a backlog.
        self.behind = False


class Fanout:
    """Sends each broadcast to every attached connection, each distinct frame encoded once."""

    def __init__(self, store: QuoteStore, clock: Clock, on_broadcast: Callable[[], None] = lambda: None):
        self.store = store
        self.clock = clock
        self.on_broadcast = on_broadcast  # called after every quotes broadcast (the hub schedules a collection)
        self.deliveries: dict[Outlet, Delivery] = {}

    def __len__(self) -> int:
        return len(self.deliveries)

    # -- one connection -------------------------------------------------

    def attach(self, outlet: Outlet, interest: Interest = NOTHING) -> Delivery:
        """Called when a connection starts following; it gets every broadcast from now on."""
        delivery = self.deliveries[outlet] = Delivery(outlet, interest)
        return delivery

    def detach(self, outlet: Outlet) -> None:
        """Called when a connection goes away or is being closed; safe to call twice."""
        delivery = self.deliveries.pop(outlet, None)
        if delivery is not None and delivery.cap is not None:
            delivery.cap.cancel()

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
            if (text := old.take(delivery.interest, self.store.step, 0.0)) is not None:
                self._write(delivery, Frame(text, self.store.step))
        elif delivery.cap.pending:
            delivery.cap.timer = self.clock.call_at(self.clock.now(), lambda: self._flush(delivery))

    # -- broadcasts -----------------------------------------------------

    def quotes(self, step: int, fresh: list[dict[str, Any]]) -> None:
        """One market step's fresh quotes: at most one frame per connection (or held by its rate cap)."""
        frames: dict[Interest, Frame | None] = {}
        snapshots: dict[Interest, Frame | None] = {}
        last_interest, last_frame = None, None
        for delivery in list(self.deliveries.values()):
            if self._held_back(delivery, snapshots):
                continue
            if delivery.cap is not None:
                self._capped(delivery, fresh, step)
                continue
            interest = delivery.interest
            if interest is not last_interest:
                if interest not in frames:
                    wanted = interest.select(fresh)
                    frames[interest] = (
                        Frame(protocol.encode(protocol.quotes_frame(wanted, step=step)), step) if wanted else None
                    )
                last_interest, last_frame = interest, frames[interest]
            if last_frame is not None:
                self._write(delivery, last_frame)
        self.on_broadcast()

    def resnapshot(self) -> None:
        """Back after an outage: every connection gets a snapshot of its symbols instead of a gap."""
        snapshots: dict[Interest, Frame | None] = {}
        for delivery in list(self.deliveries.values()):
            delivery.behind = True
            self._held_back(delivery, snapshots)

    def heartbeat(self, text: str) -> None:
        """The same heartbeat frame to every connection that is reading."""
        frame = Frame(text, self.store.step, "heartbeat")
        snapshots: dict[Interest, Frame | None] = {}
        for delivery in list(self.deliveries.values()):
            if not self._held_back(delivery, snapshots):
                self._write(delivery, frame)

    # -- internals --------------------------------------------------------

    def _held_back(self, delivery: Delivery, snapshots: dict[Interest, Frame | None]) -> bool:
        """True when this broadcast is not for the connection: not reading, or behind and sent a snapshot instead."""
        if delivery.outlet.backlogged:
            delivery.behind = True  # queue nothing more for it: memory stays bounded
            return True
        if not delivery.behind:
            return False
        delivery.behind = False
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

    def _capped(self, delivery: Delivery, fresh: list[dict[str, Any]], step: int) -> None:
        cap = delivery.cap
        cap.hold(delivery.interest.select(fresh))
        now = self.clock.now()
        if now < cap.next_at:
            if cap.pending and cap.timer is None:
                cap.timer = self.clock.call_at(cap.next_at, lambda: self._flush(delivery))
            return
        if (text := cap.take(delivery.interest, step, now)) is not None:
            self._write(delivery, Frame(text, step))

    def _flush(self, delivery: Delivery) -> None:
        """The interval ran out with quotes held and no step since: send them now."""
        cap = delivery.cap
        if cap is None or self.deliveries.get(delivery.outlet) is not delivery:
            return
        cap.timer = None
        if delivery.outlet.backlogged:
            delivery.behind = True  # it gets a snapshot once it reads again
            return
        step = self.store.step
        if (text := cap.take(delivery.interest, step, self.clock.now())) is not None:
            self._write(delivery, Frame(text, step))

    def _write(self, delivery: Delivery, frame: Frame) -> None:
        try:
            delivery.outlet.write(frame)
        except Exception:  # one broken connection must not stop the others
            log.exception("writing a frame failed; dropping that connection")
            self.detach(delivery.outlet)
