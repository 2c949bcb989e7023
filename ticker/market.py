"""The simulated price model: pure Python, no Django.

Prices follow geometric Brownian motion:

    S(t + dt) = S(t) * exp((mu - sigma**2 / 2) * dt + sigma * sqrt(dt) * Z)

with ``mu`` the annual drift, ``sigma`` the annual volatility and ``Z`` a
standard normal draw from a seeded generator, so a seed replays a market
exactly. Prices are quoted in cents; a symbol "changes" in a step only when
its quoted price moves by at least a cent, or when its halted flag flips.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal

# Trading seconds in a year: 252 sessions of 6.5 hours.
TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
CENT = Decimal("0.01")
# A simulated price never falls below one cent: GBM cannot reach zero, but
# rounding could, and a zero price would make every later step zero.
MIN_PRICE = CENT


@dataclass(frozen=True, slots=True)
class Instrument:
    """What the operator controls about a symbol (read from the database)."""

    symbol: str
    volatility: float
    drift: float
    halted: bool = False
    # The operator's previous close; None keeps the tick's own.
    reference_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """The market's latest state for one symbol."""

    symbol: str
    price: Decimal
    reference_price: Decimal
    seq: int
    ts: int
    halted: bool = False

    @property
    def change(self) -> Decimal:
        return self.price - self.reference_price

    @property
    def change_pct(self) -> float:
        if not self.reference_price:
            return 0.0
        return round(float(self.change / self.reference_price * 100), 2)


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


class Market:
    """A set of ticks stepped together with one seeded random generator.

    ``step()`` returns only the ticks that changed; each changed tick has
    ``seq`` one higher than before, so a consumer can tell a lost update.
    """

    def __init__(self, ticks: dict[str, Tick], *, dt: float, seed: int | None = None, step: int = 0):
        self.ticks = dict(ticks)
        self.dt = dt
        self.step_no = step
        self._rng = random.Random(seed)
        # Symbols never quoted before: quoted in the next step even when the
        # price does not move, so every client learns of a new listing at once.
        self._announce: set[str] = set()

    def step(self, instruments: dict[str, Instrument], *, ts: int) -> list[Tick]:
        """Advance every instrument one step and return the ticks that changed.

        ``instruments`` is the operator's current view: a symbol missing from
        it is not traded this step; a new one must already have a tick (see
        ``add``). Draws happen in symbol order so a seed replays exactly.
        """
        self.step_no += 1
        changed: list[Tick] = []
        for symbol in sorted(instruments):
            instrument = instruments[symbol]
            tick = self.ticks.get(symbol)
            if tick is None:
                continue
            # Draw even for halted symbols so halting one does not shift the
            # random stream of all the others.
            z = self._rng.gauss(0.0, 1.0)
            announce = symbol in self._announce
            self._announce.discard(symbol)
            if instrument.reference_price is not None and instrument.reference_price != tick.reference_price:
                # A new previous close changes change and change_pct: a change like any other.
                tick = self.ticks[symbol] = replace(tick, reference_price=instrument.reference_price)
                announce = True
            if instrument.halted:
                if not tick.halted or announce:
                    changed.append(self._update(tick, price=tick.price, halted=True, ts=ts))
                continue
            price = quantize(
                next_price(float(tick.price), volatility=instrument.volatility, drift=instrument.drift, dt=self.dt, z=z)
            )
            if price != tick.price or tick.halted or announce:
                changed.append(self._update(tick, price=price, halted=False, ts=ts))
        return changed

    def add(self, tick: Tick, *, announce: bool = False) -> None:
        """Start trading a symbol from ``tick`` (a new listing, a relisting or a restart).

        A tick with ``seq == 0`` has never been quoted, and ``announce`` asks
        for it too: the next step quotes the symbol even if its price does not
        move, so clients learn its state (for example a halt set while the
        market was down).
        """
        self.ticks[tick.symbol] = tick
        if tick.seq == 0 or announce:
            self._announce.add(tick.symbol)

    def checkpoint(self) -> tuple:
        """State to hand back to ``restore`` if a step cannot be persisted."""
        return dict(self.ticks), self.step_no, self._rng.getstate(), set(self._announce)

    def restore(self, state: tuple) -> None:
        ticks, self.step_no, rng_state, announce = state
        self.ticks = dict(ticks)
        self._rng.setstate(rng_state)
        self._announce = set(announce)

    def remove(self, symbol: str) -> None:
        self.ticks.pop(symbol, None)

    def _update(self, tick: Tick, *, price: Decimal, halted: bool, ts: int) -> Tick:
        new = replace(tick, price=price, halted=halted, seq=tick.seq + 1, ts=ts)
        self.ticks[tick.symbol] = new
        return new
