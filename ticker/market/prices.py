"""The simulated price model: pure Python, no Django.

Prices follow geometric Brownian motion:

    S(t + dt) = S(t) * exp((mu - sigma**2 / 2) * dt + sigma * sqrt(dt) * Z)

with ``mu`` the annual drift, ``sigma`` the annual volatility and ``Z`` a
standard normal draw from a seeded generator, so a seed replays a market
exactly (given the same ``ts`` of each step). Prices are quoted in cents; a
symbol "changes" in a step only when its quoted price moves by at least a
cent, when its halted flag flips, or when the session opens or closes.

The market trades in simulated sessions (``Schedule``): open for some
simulated hours, then closed, in simulated time that runs ``speed`` times
wall-clock time. The schedule is a pure function of the wall clock, so every
process that knows the settings agrees on it. While closed nothing moves and
nothing trades, and quotes keep the session's change, as trading screens
do after the bell; at the next open each last price becomes the previous
close and each symbol's session figures (open, high, low, volume) start again
from its first price.

Each step that moves a price also trades a simulated volume, drawn from the
same generator and larger on larger moves, and adds the move to the symbol's
current one-minute candle (wall-clock minutes, UTC). A candle is finished
when the symbol first trades in a later minute.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal

from ticker.market.sessions import ALWAYS_OPEN, CLOSED, OPEN, Schedule, Session  # noqa: F401 (re-exported)

# Trading seconds in a year: 252 sessions of 6.5 hours.
TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
CENT = Decimal("0.01")
# A simulated price never falls below one cent: GBM cannot reach zero, but
# rounding could, and a zero price would make every later step zero.
MIN_PRICE = CENT
CANDLE_MS = 60_000
# Shares trade in round lots of 100.
LOT = 100


@dataclass(frozen=True, slots=True)
class Instrument:
    """What the operator controls about a symbol (read from the database)."""

    symbol: str
    volatility: float
    drift: float
    halted: bool = False
    # The operator's reference price; a new value becomes the previous close. None keeps the tick's own.
    reference_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Candle:
    """One symbol's one-minute OHLCV candle; ``time`` is the minute's start in epoch milliseconds."""

    time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


@dataclass(frozen=True, slots=True)
class Tick:
    """The market's latest state for one symbol.

    ``reference_price`` is the operator's last setting; ``prev_close`` is what change is measured from (the
    operator's setting until the next open). ``open``/``high``/``low``/``volume`` are the session's; ``candle``
    is the current minute's (None before the symbol's first trade).
    """

    symbol: str
    price: Decimal
    reference_price: Decimal
    seq: int
    ts: int
    halted: bool = False
    prev_close: Decimal | None = None
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    volume: int = 0
    candle: Candle | None = None

    def __post_init__(self) -> None:
        # A tick read from an older row (or built by hand) gets the figures of a fresh session.
        if self.prev_close is None:
            object.__setattr__(self, "prev_close", self.reference_price)
        for name in ("open", "high", "low"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.price)

    @property
    def change(self) -> Decimal:
        return self.price - self.prev_close

    @property
    def change_pct(self) -> float:
        return change_pct(self.change, self.prev_close)


def change_pct(change: Decimal, prev_close: Decimal) -> float:
    """``change`` as a percentage of ``prev_close``, rounded half to even to two decimals (0.0 without a close).

    Exact (decimal arithmetic on cents, no float before the rounding), so a client that gets only price and
    prev_close (the delta format, docs/protocol.md) can work out the same figure with integers."""
    if not prev_close:
        return 0.0
    return float((change * 100 / prev_close).quantize(CENT, ROUND_HALF_EVEN))


def quantize(price: float | Decimal) -> Decimal:
    """Round a price to cents, never below one cent."""
    value = Decimal(str(price)).quantize(CENT, rounding=ROUND_HALF_EVEN)
    return max(value, MIN_PRICE)


def dt_years(interval_s: float, speed: float) -> float:
    """The simulated time one step covers, in years of trading time."""
    if interval_s <= 0 or speed <= 0:
        raise ValueError("interval and speed must be positive")
    return interval_s * speed / TRADING_SECONDS_PER_YEAR


def next_price(price: float, *, volatility: float, drift: float, dt: float, z: float) -> float:
    """One GBM step from ``price`` with the standard normal draw ``z``."""
    return price * math.exp((drift - volatility**2 / 2) * dt + volatility * math.sqrt(dt) * z)


def step_volume(z: float, u: float) -> int:
    """Shares traded in one step: round lots, more on bigger moves (``z``), spread by a uniform draw ``u``."""
    return LOT * (1 + int(u * 8 * (1 + z * z)))


def candle_after(candle: Candle | None, *, price: Decimal, volume: int, ts: int) -> Candle:
    """``candle`` with one more trade at ``ts``; a new candle if the trade falls in a later minute."""
    minute = ts - ts % CANDLE_MS
    if candle is None or candle.time != minute:
        return Candle(minute, price, price, price, price, volume)
    return Candle(minute, candle.open, max(candle.high, price), min(candle.low, price), price, candle.volume + volume)


def _rebased(tick: Tick, instrument: Instrument, *, opening: bool) -> tuple[Tick, bool]:
    """``tick`` with a new previous close if it gets one this step, and whether it does (then it is quoted again).

    At a session's open the last session's last price is its close: change counts from there (rolled at the open,
    not the close, so a closed market still shows the session's change and movers); so is a new reference price."""
    if opening:
        tick = replace(tick, prev_close=tick.price, open=tick.price, high=tick.price, low=tick.price, volume=0)
    reference = instrument.reference_price
    repriced = reference is not None and reference != tick.reference_price
    if repriced:
        tick = replace(tick, reference_price=reference, prev_close=reference)
    return tick, opening or repriced


class Market:
    """A set of ticks stepped together with one seeded random generator.

    ``step()`` returns only the ticks that changed; each changed tick has
    ``seq`` one higher than before, so a consumer can tell a lost update."""

    def __init__(
        self,
        ticks: dict[str, Tick],
        *,
        dt: float,
        seed: int | None = None,
        step: int = 0,
        schedule: Schedule = ALWAYS_OPEN,
        session: Session | None = None,
    ):
        self.ticks = dict(ticks)
        self.dt = dt
        self.step_no = step
        self.schedule = schedule
        # The session of the last step (None: none stepped yet; the first step takes its session as it finds it).
        self.session = session
        self.finished: list[tuple[str, Candle]] = []
        self._rng = random.Random(seed)
        self.crossed: list[Tick] = []  # the last step's changed ticks that a ``watch`` asked for
        # Symbols never quoted before: quoted next step even if the price stays, so clients learn of a listing at once.
        self._announce: set[str] = set()

    def step(self, instruments: dict[str, Instrument], *, ts: int, watch: Callable | None = None) -> list[Tick]:
        """Advance every instrument one step and return the ticks that changed.

        ``instruments`` is the operator's current view: a symbol missing from it is not traded this step; a new one
        must already have a tick (see ``add``). Draws happen in symbol order so a seed replays exactly. The candles
        this step finished are in ``finished`` until the next step.

        ``watch`` (the alert book's, ``AlertBook.watch``) is called with this step's symbols in order and answers
        two arrays of floats by position, ``low`` and ``high``: a traded tick goes to ``crossed`` too unless its
        new price before rounding is strictly between them and its previous close stayed; a tick quoted again
        without a trade always does. Tested where the price is made, on two arrays the CPU keeps close, not in a
        second pass over the moved quotes (docs/benchmarks.md, "Alert evaluation").
        """
        self.step_no += 1
        self.finished = []
        self.crossed = crossed = []
        closing, opening = self._next_session(ts)
        trading = self.session.state == OPEN
        changed: list[Tick] = []
        rng, dt = self._rng, self.dt
        order = sorted(instruments)
        low, high = watch(order) if watch is not None else (None, None)
        for i, symbol in enumerate(order):
            instrument = instruments[symbol]
            tick = self.ticks.get(symbol)
            if tick is None:
                continue
            tick, rebased = _rebased(tick, instrument, opening=opening)
            # At a close every symbol is quoted once more: the session's figures are final.
            announce = symbol in self._announce or closing or rebased
            self._announce.discard(symbol)
            if trading:  # drawn even for a halted symbol: halting one does not shift the others' random stream
                z, u = rng.gauss(0.0, 1.0), rng.random()
            if not trading or instrument.halted:
                quote_again = instrument.halted != tick.halted or announce
            else:
                made = next_price(
                    float(tick.price), volatility=instrument.volatility, drift=instrument.drift, dt=dt, z=z
                )
                price = quantize(made)
                if price != tick.price:
                    changed.append(new := self._trade(tick, price, volume=step_volume(z, u), ts=ts, first=opening))
                    if low is not None and (rebased or not low[i] < made < high[i]):
                        crossed.append(new)
                    continue
                quote_again = tick.halted or announce
            self.ticks[symbol] = tick
            if quote_again:
                changed.append(new := self._update(tick, halted=instrument.halted, ts=ts))
                if low is not None:
                    crossed.append(new)
        return changed

    def _next_session(self, ts: int) -> tuple[bool, bool]:
        """Moves to the session at ``ts``; returns whether one closed and whether one opened since the last step."""
        session = self.schedule.at(ts)
        before, self.session = self.session, session
        if before is None:
            return False, False
        closing = before.state == OPEN and (session.number > before.number or session.state == CLOSED)
        opening = session.state == OPEN and (session.number > before.number or before.state == CLOSED)
        return closing, opening

    def _trade(self, tick: Tick, price: Decimal, *, volume: int, ts: int, first: bool) -> Tick:
        """``tick`` after a trade of ``volume`` shares at ``price``, the session's first if ``first`` (it sets the
        open); a candle the trade finishes goes to ``finished``."""
        candle = candle_after(tick.candle, price=price, volume=volume, ts=ts)
        if tick.candle is not None and tick.candle.time != candle.time:
            self.finished.append((tick.symbol, tick.candle))
        # Not dataclasses.replace: this runs for nearly every symbol every step, and replace() was 20% of a step.
        new = Tick(
            tick.symbol,
            price,
            tick.reference_price,
            tick.seq + 1,
            ts,
            False,
            tick.prev_close,
            price if first else tick.open,
            price if first or price > tick.high else tick.high,
            price if first or price < tick.low else tick.low,
            tick.volume + volume,
            candle,
        )
        self.ticks[tick.symbol] = new
        return new

    def add(self, tick: Tick, *, announce: bool = False) -> None:
        """Start trading a symbol from ``tick`` (a new listing, a relisting or a restart).

        A tick with ``seq == 0`` has never been quoted, and ``announce`` asks for it too: the next step quotes the
        symbol even if its price does not move, so clients learn its state (for example a halt set while the market
        was down).
        """
        self.ticks[tick.symbol] = tick
        if tick.seq == 0 or announce:
            self._announce.add(tick.symbol)

    def checkpoint(self) -> tuple:
        """State to hand back to ``restore`` if a step cannot be persisted."""
        return dict(self.ticks), self.step_no, self._rng.getstate(), set(self._announce), self.session

    def restore(self, state: tuple) -> None:
        ticks, self.step_no, rng_state, announce, self.session = state
        self.ticks = dict(ticks)
        self._rng.setstate(rng_state)
        self._announce = set(announce)
        self.finished = []

    def remove(self, symbol: str) -> None:
        self.ticks.pop(symbol, None)

    def _update(self, tick: Tick, *, ts: int, halted: bool) -> Tick:
        """The same price, quoted again (a halt, a resume, a session's open or close, a new previous close)."""
        new = replace(tick, halted=halted, seq=tick.seq + 1, ts=ts)
        self.ticks[tick.symbol] = new
        return new
