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

A connection on the delta format (``ticker.v2.json``, docs/protocol.md) gets
the same frames assembled from delta pieces (each symbol's changes, also
encoded once per step). A frame that several connections share is compressed
once for all of them (ticker/edge/server/); of the frames made for a single
connection, only the first ``COMPRESSED_SINGLES`` of each step may be, so
thousands of personal watchlists do not cost a compressor per client per step
(issue 14; docs/benchmarks.md, "Compression and deltas").
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from ticker.hub.clock import Clock, Timer
from ticker.hub.interest import EVERYTHING, NOTHING, Interest
from ticker.hub.movers import MoversBoard
from ticker.hub.outlet import Outlet
from ticker.hub.ratecap import RateCap
from ticker.hub.store import QuoteStore
from ticker.ops import metrics
from ticker.wire import protocol
from ticker.wire.frames import Frame

log = logging.getLogger(__name__)
_UNSEEN = object()


# Per market step, at most this many frames made for one connection alone are compressed (the oldest connections'
# first); the rest go uncompressed. Compressing a 20-quote frame costs 18-26 us, mostly setting up a fresh
# compressor: a third again of the ~70 us a personal watchlist's frame costs in all, over issue 14's bound of
# 1.2x (docs/benchmarks.md, "Compression and deltas").
COMPRESSED_SINGLES = 32


class Delivery:
    """What the hub knows of one connection: what it wants, its format and rate cap, and whether it fell behind."""

    __slots__ = ("outlet", "interest", "delta", "cap", "behind", "movers", "movers_shown")

    def __init__(self, outlet: Outlet, interest: Interest, delta: bool = False):
        self.outlet = outlet
        self.interest = interest
        self.delta = delta  # quotes frames carry each symbol's changes only (docs/protocol.md, "Quote formats")
        self.cap: RateCap | None = None  # max_rate, if the client asked for one
        # Set while the client does not read (its outlet is backlogged): it is
        # sent nothing, and once it reads again, a snapshot instead of a backlog.
        self.behind = False
        self.movers = 0  # how many gainers and losers it follows (0: none)
        self.movers_shown: tuple | None = None  # MoversBoard.key of the last movers frame it was sent


class Batch:
    """One step's fresh quotes, in symbol order, each encoded once on first use (whole, and as a delta against
    ``previous``, the quotes they replaced), and picked per interest."""

    __slots__ = ("step", "symbols", "quotes", "pieces", "deltas", "picked")

    # After this many watchlist frames in one step (of one format) every fresh quote is encoded, and later
    # watchlists are picked with C-level look-ups (many personal watchlists together want nearly every quote;
    # a few need not pay for encoding all of a big market's).
    LAZY_WATCHLISTS = 32

    def __init__(self, step: int, fresh: list[dict[str, Any]], previous: dict[str, dict[str, Any]] | None = None):
        self.step = step
        ordered = sorted(fresh, key=itemgetter("symbol"))
        self.symbols = [q["symbol"] for q in ordered]
        self.quotes = dict(zip(self.symbols, ordered, strict=True))
        self.pieces = _Pieces(self.quotes, protocol.encode_quote)
        previous = previous or {}
        self.deltas = _Pieces(
            self.quotes, lambda quote: protocol.encode_quote(protocol.quote_delta(quote, previous.get(quote["symbol"])))
        )
        self.picked = 0  # quotes in the last frame ``payload`` made (the updates it delivers)

    def wanted(self, interest: Interest) -> list[str]:
        """The fresh symbols ``interest`` wants, in symbol order; a watchlist costs a look-up per symbol it holds."""
        if interest.everything:
            excluded = interest.symbols
            return [s for s in self.symbols if s not in excluded] if excluded else self.symbols
        quotes = self.quotes
        if len(interest.symbols) <= len(quotes):
            return [s for s in interest.ordered if s in quotes]
        return [s for s in self.symbols if s in interest.symbols]

    def payload(self, interest: Interest, delta: bool = False) -> bytes | None:
        """The quotes frame for ``interest``, assembled from the encoded quotes (or deltas); None when it wants none."""
        pieces, quotes = self.deltas if delta else self.pieces, self.quotes
        if not interest.everything and len(interest.symbols) <= len(quotes):
            # A watchlist: one pass over its own symbols, no list of names first.
            if pieces.lazy_watchlists:
                pieces.lazy_watchlists -= 1
                if not pieces.lazy_watchlists:
                    pieces.encode_all()
                picked = [pieces[s] for s in interest.ordered if s in quotes]
            else:
                picked = list(filter(None, map(pieces.get, interest.ordered)))
        else:
            picked = [pieces[s] for s in self.wanted(interest)]
        self.picked = len(picked)
        return protocol.quotes_payload(picked, step=self.step) if picked else None


class _Pieces(dict):
    """symbol -> its quote's JSON (``encode``): encoded the first time a frame of the step needs it, then shared."""

    __slots__ = ("quotes", "encode", "lazy_watchlists")

    def __init__(self, quotes: dict[str, dict[str, Any]], encode: Callable[[dict[str, Any]], bytes]):
        super().__init__()
        self.quotes = quotes
        self.encode = encode
        self.lazy_watchlists = Batch.LAZY_WATCHLISTS  # watchlist frames left before ``encode_all``

    def __missing__(self, symbol: str) -> bytes:
        piece = self[symbol] = self.encode(self.quotes[symbol])
        return piece

    def encode_all(self) -> None:
        """Encode every fresh quote not encoded yet; from then on ``get`` finds each (and None for the rest)."""
        for symbol in self.quotes.keys() - self.keys():
            self[symbol] = self.encode(self.quotes[symbol])


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
        self.sent = metrics.Sent()  # what was handed to connections, for /metrics and the operations view
        self.compressed_singles = COMPRESSED_SINGLES  # left this step (``_single``)
        # TICKER_WS_COMPRESS_MIN_BYTES: an outlet sends shorter frames uncompressed, so they cost no budget.
        self.compress_min_bytes = compress_min_bytes

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

    # -- broadcasts -----------------------------------------------------

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
        self.compressed_singles = COMPRESSED_SINGLES
        # A frame is kept for the rest of the step only when another connection has the same interest and
        # format: a personal watchlist's frame is written and dropped at once, so the next one reuses its memory
        # (kept, 2,000 personal frames were ~15 MB allocated and freed per step; py-spy showed the
        # assembly at 16% of busy time, docs/benchmarks.md, "Personal watchlists").
        shared = Counter((d.interest, d.delta) for d in deliveries)
        frames: dict[tuple[Interest, bool], tuple[Frame, int, int] | None] = {}
        snapshots: dict[Interest, Frame | None] = {}
        # Counted here and added once (metrics.Sent), not per frame: this loop is the hot path.
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
                    frame = Frame(step=step, payload=payload, compress=self._single(delivery, payload))
                    made = (frame, len(payload), batch.picked)
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
            self._write(delivery, Frame(step=batch.step, payload=payload, compress=self._single(delivery, payload)))

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
            self._write(delivery, Frame(step=step, payload=payload, compress=self._single(delivery, payload)))

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

    def _single(self, delivery: Delivery, payload: bytes) -> bool:
        """May a frame made for this connection alone be compressed? Yes while this step's budget lasts."""
        # getattr: the SSE outlet (ticker/views.py) has no ``deflate``: it sends no compressed frames.
        if not getattr(delivery.outlet, "deflate", False) or len(payload) < self.compress_min_bytes:
            return True  # nothing to spend: the outlet does not compress our frames, or not one this small
        if self.compressed_singles <= 0:
            return False
        self.compressed_singles -= 1
        return True

    def _write(self, delivery: Delivery, frame: Frame) -> None:
        """Write one frame and count it (broadcasts count theirs in one go and call ``_put``)."""
        self.sent.add(frame.kind, len(frame.payload))
        self._put(delivery, frame)

    def _put(self, delivery: Delivery, frame: Frame) -> None:
        try:
            delivery.outlet.write(frame)
        except Exception:  # one broken connection must not stop the others
            log.exception("writing a frame failed; dropping that connection")
            self.detach(delivery.outlet)
