"""Reads. Every function here is synchronous; async callers wrap it once."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from ticker.market.lease import MarketIdentity
from ticker.market.prices import OPEN, Candle, Instrument, Schedule, Session, Tick
from ticker.models import Candle as StoredCandle
from ticker.models import MarketState, Stock
from ticker.wire import protocol


def tick_of(stock: Stock) -> Tick:
    candle = None
    if stock.candle_time is not None:
        candle = Candle(
            stock.candle_time, stock.candle_open, stock.candle_high, stock.candle_low, stock.price, stock.candle_volume
        )
    return Tick(
        symbol=stock.symbol,
        price=stock.price,
        reference_price=stock.reference_price,
        seq=stock.seq,
        ts=stock.quoted_at,
        halted=stock.halted,
        prev_close=stock.prev_close,
        open=stock.open,
        high=stock.high,
        low=stock.low,
        volume=stock.volume,
        candle=candle,
    )


def open_through(schedule: Schedule, ts: int, span_ms: int) -> int:
    """The first moment from ``ts`` at which a session is open and stays open ``span_ms`` (or a whole session,
    if shorter): where a benchmark starts, so that it measures trading steps and not a closed market."""
    session = schedule.at(ts)
    if session.state == OPEN and (session.until - ts >= min(span_ms, schedule.open_ms) or not schedule.closed_ms):
        return ts
    return session.until + (schedule.closed_ms if session.state == OPEN else 0)


def schedule() -> Schedule:
    """The trading sessions the settings describe (every process derives the same ones)."""
    return Schedule.of(
        open_hours=settings.MARKET_SESSION_OPEN_HOURS,
        closed_hours=settings.MARKET_SESSION_CLOSED_HOURS,
        speed=settings.MARKET_SPEED,
    )


def stored_session() -> Session | None:
    """The session as of the market's last stored step (None before the market ever ran)."""
    row = MarketState.objects.filter(pk=MarketState.ONE).first()
    return None if row is None else Session(row.session_state, row.session_until, row.session_number)


def session() -> Session:
    """The session as the market last stored it; before it ever ran, the one the schedule gives for now."""
    return stored_session() or schedule().at(time.time_ns() // 1_000_000)


def listed_stocks(symbols: Iterable[str] | None = None):
    qs = Stock.objects.filter(active=True)
    if symbols is not None:
        qs = qs.filter(symbol__in=list(symbols))
    return qs.order_by("symbol")


@dataclass(frozen=True, slots=True)
class Listed:
    """Listed stocks, by symbol, as one read: what the dashboard, polling and the hub start from."""

    stocks: list[Stock]
    # The session on the wire ({"state", "until"}), or None when not read.
    session: dict[str, Any] | None = field(default=None)
    # The site and the market leader's lease token as of this read, or None when not read (ticker/hub/source.py).
    market: MarketIdentity | None = field(default=None)

    @property
    def step(self) -> int:
        """The latest market step among these stocks (0 when there are none)."""
        return max((s.step for s in self.stocks), default=0)

    @property
    def symbols(self) -> set[str]:
        return {s.symbol for s in self.stocks}

    def quotes(self) -> list[dict[str, Any]]:
        return [protocol.quote(tick_of(s)) for s in self.stocks]

    def changed_steps(self) -> list[int]:
        """The step in which each stock's quote last changed, in the order of ``quotes()``."""
        return [s.step for s in self.stocks]


def listed(symbols: Iterable[str] | None = None) -> Listed:
    """Every listed stock, or those named that are listed."""
    return Listed(list(listed_stocks(symbols)), protocol.session(session()))


def latest_ticks(symbols: Iterable[str] | None = None) -> list[Tick]:
    """The latest tick of each active symbol (all, or those named), by symbol."""
    return [tick_of(stock) for stock in listed_stocks(symbols)]


def instruments() -> dict[str, tuple[Instrument, int]]:
    """The operator's current controls for every active symbol, with the stock's id.

    Read every step, so it reads tuples, not model instances: with 5,000
    symbols building Stock objects alone took most of a step.
    """
    rows = Stock.objects.filter(active=True).values_list(
        "symbol", "volatility", "drift", "halted", "reference_price", "id"
    )
    return {
        symbol: (Instrument(symbol, volatility, drift, halted, reference_price), pk)
        for symbol, volatility, drift, halted, reference_price, pk in rows
    }


def last_step() -> int:
    return Stock.objects.order_by("-step").values_list("step", flat=True).first() or 0


def candles(symbol: str, *, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` one-minute candles of ``symbol``, oldest first, the current (unfinished) one last."""
    stock = Stock.objects.get(symbol=symbol)
    current = tick_of(stock).candle
    finished = StoredCandle.objects.filter(stock=stock).order_by("-time")
    if current is not None:
        finished = finished.filter(time__lt=current.time)
    rows = list(finished.values_list("time", "open", "high", "low", "close", "volume")[: limit - (current is not None)])
    rows.reverse()
    if current is not None:
        rows.append((current.time, current.open, current.high, current.low, current.close, current.volume))
    return [_candle(row) for row in rows]


def _candle(row) -> dict[str, Any]:
    time_ms, open_, high, low, close, volume = row
    return {
        "time": time_ms // 1000,
        "open": float(open_),
        "high": float(high),
        "low": float(low),
        "close": float(close),
        "volume": volume,
    }


SPARKLINE_CANDLES = 60


def sparklines(symbols: list[str]) -> dict[str, list[float]]:
    """The closes of each symbol's last 60 one-minute candles, oldest first (the current minute's last)."""
    stocks = {s.pk: s for s in listed_stocks(symbols).only("id", "symbol", "price", "candle_time")}
    lines: dict[int, list[float]] = {pk: [] for pk in stocks}
    # One query: the finished candles of the last hour of candles kept. A symbol
    # that did not trade for a while simply has fewer points.
    newest = max((s.candle_time for s in stocks.values() if s.candle_time is not None), default=None)
    if newest is not None:
        since = newest - SPARKLINE_CANDLES * 60_000
        rows = (
            StoredCandle.objects.filter(stock_id__in=list(stocks), time__gt=since)
            .order_by("stock_id", "time")
            .values_list("stock_id", "time", "close")
        )
        for pk, time_ms, close in rows:
            current = stocks[pk].candle_time
            if current is None or time_ms < current:
                lines[pk].append(float(close))
    out = {}
    for pk, stock in stocks.items():
        line = lines[pk]
        line.append(float(stock.price))  # the current minute's close is the price
        out[stock.symbol] = line[-SPARKLINE_CANDLES:]
    return out


def search(text: str, *, limit: int) -> list[dict[str, str]]:
    """Listed symbols matching ``text``: symbols that start with it first (by symbol), then names containing it."""
    listed = Stock.objects.filter(active=True).order_by("symbol")
    fields = ("symbol", "name", "sector")
    first = list(listed.filter(symbol__istartswith=text).values(*fields)[:limit])
    if len(first) < limit:
        rest = listed.filter(name__icontains=text).exclude(symbol__istartswith=text).values(*fields)
        first += list(rest[: limit - len(first)])
    return first


def history(symbol: str, *, limit: int) -> list[dict[str, Any]]:
    """The closes of ``symbol``'s last ``limit`` one-minute candles as chart points, oldest first."""
    return [{"price": c["close"], "ts": c["time"] * 1000} for c in candles(symbol, limit=limit)]
