"""The fan-out against a model of its clients: whatever happens, no client sees a seq gap, and each catches up.

Hypothesis drives the real ``Fanout`` and ``QuoteStore`` (ticker/hub/) with the hub's hand-moved clock through
random sequences of what happens to a web process: connections attach, subscribe and unsubscribe (whole
quotes or the delta format), stop reading and read again, change their ``max_rate``; the market steps
(quotes with growing seq, new listings and relistings), delists symbols, repeats a batch, or goes away
for a while and comes back (the hub reloads the stored market and resnapshots every connection).

Each connection's outlet is a client keeping docs/protocol.md's rules as it reads: a snapshot is a new
baseline, a ``quotes`` frame continues every seq by exactly one (or, marked ``conflated``, jumps forward),
a delta applies only onto the quote at ``seq - 1``, nothing arrives for a symbol it does not follow. Once
every connection reads again and the rate caps' intervals have run out, each holds exactly the store's
latest quote of every symbol it follows.
"""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ticker.hub.clock import ManualClock
from ticker.hub.fanout import Fanout
from ticker.hub.store import QuoteStore
from ticker.market.prices import Tick
from ticker.wire import protocol

from .clients import is_whole, merge_delta

SYMBOLS = ("AAA", "BBB", "CCC", "DDD")
CONNECTIONS = 3
RATES = (None, 0.5, 1.0, 2.0, 4.0, 10.0)  # max_rate values a client may ask for (None: no cap)

symbols = st.sets(st.sampled_from(SYMBOLS), max_size=2)
subscription = st.none() | symbols  # None: every symbol ("*")
# A step's changes: symbol -> (price in cents, halted). A symbol not listed is listed by its change.
changes = st.dictionaries(st.sampled_from(SYMBOLS), st.tuples(st.integers(1, 40_000), st.booleans()), max_size=3)


class Client:
    """A server outlet (ticker.hub.outlet.Outlet: ``write``, ``backlogged`` and ``deflate``) with a client behind
    it that keeps the protocol's rules as frames arrive (an outlet delivers what it was written in order, so
    checking on write is checking on arrival)."""

    deflate = False  # as the SSE and queued outlets: the fan-out's own compressed frames are not sent to it

    def __init__(self, number: int):
        self.number = number
        self.backlogged = False
        self.attached = False
        self.delta = False
        self.everything = False  # subscribed to "*": every symbol but ``symbols``, otherwise just ``symbols``
        self.symbols: set[str] = set()
        self.view: dict[str, dict] = {}  # symbol -> the whole quote this client holds
        self.step = 0  # the step of the last snapshot or quotes frame
        # What broke the protocol: the fan-out catches an exception from ``write`` (and drops the connection),
        # so a failed check is kept here as well and reported by the state machine's invariant.
        self.failures: list[str] = []

    def __repr__(self) -> str:
        return f"client {self.number}"

    def reset(self, delta: bool) -> None:
        self.attached, self.delta, self.backlogged = True, delta, False
        self.everything, self.symbols, self.view, self.step = False, set(), {}, 0

    def wants(self, symbol: str) -> bool:
        return (symbol in self.symbols) != self.everything

    def subscribe(self, named: set[str] | None) -> None:
        if named is None:
            self.everything, self.symbols = True, set()
        elif self.everything:
            self.symbols -= named
        else:
            self.symbols |= named

    def unsubscribe(self, named: set[str] | None) -> None:
        if named is None:
            self.everything, self.symbols = False, set()
        elif self.everything:
            self.symbols |= named
        else:
            self.symbols -= named
        for symbol in list(self.view):
            if not self.wants(symbol):
                del self.view[symbol]  # the client stops showing it

    def write(self, frame) -> None:
        try:
            self._read(json.loads(frame.text))
        except AssertionError as failure:
            self.failures.append(str(failure))
            raise

    def _read(self, data: dict) -> None:
        kind = data["type"]
        assert self.attached, f"{self}: a {kind} frame after it went away"
        if kind in ("snapshot", "quotes"):
            assert data["step"] >= self.step, f"{self}: step {data['step']} after {self.step}"
            self.step = data["step"]
        if kind == "snapshot":
            for quote in data["quotes"]:
                self._baseline(quote)
        elif kind == "quotes":
            for quote in data["quotes"]:
                self._update(quote, conflated=data.get("conflated", False))
        elif kind == "delisted":
            for symbol in data["symbols"]:
                assert self.wants(symbol), f"{self}: delisted {symbol}, which it does not follow"
                self.view.pop(symbol, None)
                if not self.everything:
                    self.symbols.discard(symbol)
        else:
            assert kind == "heartbeat", f"{self}: unexpected {data}"

    def _baseline(self, quote: dict) -> None:
        symbol = quote["symbol"]
        assert self.wants(symbol), f"{self}: snapshot of {symbol}, which it does not follow"
        assert is_whole(quote), f"{self}: a snapshot's quote is whole: {quote}"
        held = self.view.get(symbol)
        assert held is None or quote["seq"] >= held["seq"], f"{self}: snapshot went back: {held} -> {quote}"
        self.view[symbol] = quote

    def _update(self, quote: dict, conflated: bool) -> None:
        symbol = quote["symbol"]
        assert self.wants(symbol), f"{self}: a quote of {symbol}, which it does not follow"
        held = self.view.get(symbol)
        if held is None:
            # Only a symbol listed after its "*" snapshot comes without a baseline: whole, its listing's quote.
            assert self.everything, f"{self}: {symbol} seq {quote['seq']} before any snapshot of it"
            assert is_whole(quote), f"{self}: a delta of {symbol} with nothing to apply it to: {quote}"
            self.view[symbol] = quote
        elif conflated:
            assert quote["seq"] > held["seq"], f"{self}: conflated {symbol} went back: {held['seq']} -> {quote}"
            assert is_whole(quote), f"{self}: a conflated quote is whole: {quote}"
            self.view[symbol] = quote
        else:
            assert quote["seq"] == held["seq"] + 1, f"{self}: {symbol} seq gap {held['seq']} -> {quote['seq']}"
            self.view[symbol] = quote if is_whole(quote) else merge_delta(held, quote)


class FanoutModel(RuleBasedStateMachine):
    """The market, the hub's store and fan-out, and CONNECTIONS clients that may come and go."""

    @initialize(
        listed=st.sets(st.sampled_from(SYMBOLS), min_size=1),
        connections=st.lists(
            st.tuples(st.booleans(), subscription, st.sampled_from(RATES)), min_size=CONNECTIONS, max_size=CONNECTIONS
        ),
    )
    def start(self, listed, connections):
        self.clock = ManualClock(now=100.0)
        self.store = QuoteStore()
        self.fanout = Fanout(self.store, self.clock)
        self.clients = [Client(i) for i in range(CONNECTIONS)]
        self.step = 1
        self.ticks: dict[str, Tick] = {}  # every symbol ever listed, as the market last quoted it
        self.listed: set[str] = set()
        self.changed_at: dict[str, int] = {}
        self.last_batch: list[dict] = []
        for symbol in sorted(listed):
            self._change(symbol, 10_000, False)
        self.store.apply(self.step, self._quotes(self.listed))
        for i, (delta, named, rate) in enumerate(connections):  # connected from the start: fewer idle steps
            self.connect(i, delta)
            self.subscribe(i, named)
            self.max_rate(i, rate)

    # -- the market ------------------------------------------------------

    def _change(self, symbol: str, cents: int, halted: bool) -> None:
        """The market moves ``symbol`` (listing it if it is not): its seq grows by one."""
        held = self.ticks.get(symbol)
        price = Decimal(cents) / 100
        self.ticks[symbol] = Tick(
            symbol=symbol,
            price=price,
            reference_price=Decimal(100),
            seq=held.seq + 1 if held else 1,
            ts=self.step,
            halted=halted,
            open=Decimal(100),
            high=max(price, held.high) if held else price,
            low=min(price, held.low) if held else price,
            volume=(held.volume if held else 0) + 100,
        )
        self.listed.add(symbol)
        self.changed_at[symbol] = self.step

    def _quotes(self, names) -> list[dict]:
        return [protocol.quote(self.ticks[s]) for s in sorted(names)]

    @rule(moves=changes)
    def market_step(self, moves):
        """One step's batch, handed on as QuoteHub.on_batch does."""
        self.step += 1
        for symbol, (cents, halted) in moves.items():
            self._change(symbol, cents, halted)
        self.last_batch = self._quotes(moves)
        if fresh := self.store.apply(self.step, self.last_batch):
            self.fanout.quotes(self.step, fresh, self.store.previous)

    @rule(first=changes, then=changes)
    def two_steps(self, first, then):
        """Two steps in a row (within a rate cap's interval: the second is held)."""
        self.market_step(first)
        self.market_step(then)

    @rule()
    def batch_again(self):
        """The latest batch delivered twice (queued while the hub loaded its snapshot): nothing in it is news.

        Only the latest: a batch older than a delisting comes, in order, before the batch that delists."""
        if fresh := self.store.apply(self.step, self.last_batch):
            self.fanout.quotes(self.step, fresh, self.store.previous)

    @rule(gone=symbols)
    def delist(self, gone):
        """The operator deactivates symbols: a batch with ``delisted`` (QuoteHub.on_batch)."""
        self.step += 1
        self.listed -= gone
        self.last_batch = []
        if delisted := sorted(s for s in gone if self.store.known(s)):
            self.store.delist(delisted)
            self.fanout.delisted(self.step, delisted)

    @rule(steps=st.lists(changes, min_size=1, max_size=2), gone=symbols)
    def outage(self, steps, gone):
        """The hub misses some steps (and delistings), then reloads the stored market (QuoteHub.load)."""
        for moves in steps:
            self.step += 1
            for symbol, (cents, halted) in moves.items():
                self._change(symbol, cents, halted)
        self.listed -= gone
        self.last_batch = []
        stored = self._quotes(self.listed)
        was = self.store.symbols() - self.listed
        fresh = self.store.replace(self.step, stored, [self.changed_at[q["symbol"]] for q in stored])
        if was:
            self.fanout.delisted(self.step, was)
        if fresh:
            self.fanout.resnapshot()

    @rule()
    def heartbeat(self):
        self.fanout.heartbeat(protocol.encode(protocol.heartbeat_frame(feed="live", step=self.step, session=None)))

    @rule(seconds=st.sampled_from([0.05, 0.1, 0.25, 0.5, 1.0, 2.5]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)

    # -- the connections -------------------------------------------------

    @rule(i=st.integers(0, CONNECTIONS - 1), delta=st.booleans())
    def connect(self, i, delta):
        """The connection goes away (if it was there) and a new one takes its place."""
        client = self.clients[i]
        if client.attached:
            self.fanout.detach(client)
            self.fanout.detach(client)  # safe twice (every way out runs the same teardown)
        client.reset(delta)
        self.fanout.attach(client, delta=delta)

    @rule(i=st.integers(0, CONNECTIONS - 1), named=subscription)
    def subscribe(self, i, named):
        """A subscribe the consumer accepted: unknown symbols are refused before the fan-out hears of them."""
        client = self.clients[i]
        if named is not None:
            named = {s for s in named if self.store.known(s)}
            if not named:
                return
        if client.attached:
            client.subscribe(named)
            self.fanout.subscribe(client, named)

    @rule(i=st.integers(0, CONNECTIONS - 1), named=subscription)
    def unsubscribe(self, i, named):
        client = self.clients[i]
        if client.attached:
            self.fanout.unsubscribe(client, named)
            client.unsubscribe(named)

    @rule(i=st.integers(0, CONNECTIONS - 1), backlogged=st.booleans())
    def reads(self, i, backlogged):
        """The client stops reading (its outlet backs up) or drains what was queued and reads again."""
        self.clients[i].backlogged = backlogged

    @rule(i=st.integers(0, CONNECTIONS - 1), rate=st.sampled_from(RATES))
    def max_rate(self, i, rate):
        if self.clients[i].attached:
            self.fanout.set_max_rate(self.clients[i], rate)

    # -- what must hold ----------------------------------------------------

    @invariant()
    def no_client_saw_a_broken_rule(self):
        assert [f for c in self.clients for f in c.failures] == []

    @invariant()
    def the_fanout_holds_exactly_the_attached_clients(self):
        assert {c.number for c in self.fanout.deliveries} == {c.number for c in self.clients if c.attached}

    @rule()
    def catch_up(self):
        """Everyone reads again; a heartbeat (any broadcast) and the rate caps' intervals later, each client
        holds the store's latest quote of exactly the symbols it follows."""
        for client in self.clients:
            client.backlogged = False
        self.heartbeat()
        self.clock.advance(max(1 / r for r in RATES if r) + 0.01)
        self.no_client_saw_a_broken_rule()
        self.the_fanout_holds_exactly_the_attached_clients()
        latest = {q["symbol"]: q for q in self.store.snapshot()}
        for client in self.clients:
            if client.attached:
                expected = {s: q for s, q in latest.items() if client.wants(s)}
                assert client.view == expected, f"{client} holds {client.view}, the store {expected}"

    def teardown(self):
        if hasattr(self, "fanout"):
            self.catch_up()


FanoutModel.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestFanoutModel = FanoutModel.TestCase
