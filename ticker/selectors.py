"""Reads. Every function here is synchronous; async callers wrap it once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import protocol
from .market import Instrument, Tick
from .models import PricePoint, Stock


def tick_of(stock: Stock) -> Tick:
    return Tick(
        symbol=stock.symbol,
        price=stock.price,
        reference_price=stock.reference_price,
        seq=stock.seq,
        ts=stock.quoted_at,
        halted=stock.halted,
    )


def listed_stocks(symbols: Iterable[str] | None = None):
    qs = Stock.objects.filter(active=True)
    if symbols is not None:
        qs = qs.filter(symbol__in=list(symbols))
    return qs.order_by("symbol")


@dataclass(frozen=True, slots=True)
class Listed:
    """Listed stocks, by symbol, as one read: what the dashboard, polling and the hub start from."""

    stocks: list[Stock]

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
    return Listed(list(listed_stocks(symbols)))


def latest_ticks(symbols: Iterable[str] | None = None) -> list[Tick]:
    """The latest tick of each active symbol (all, or those named), by symbol."""
    return [tick_of(stock) for stock in listed_stocks(symbols)]


def instruments() -> dict[str, tuple[Instrument, Stock]]:
    """The operator's current controls for every active symbol."""
    return {
        stock.symbol: (
            Instrument(
                symbol=stock.symbol,
                volatility=stock.volatility,
                drift=stock.drift,
                halted=stock.halted,
                reference_price=stock.reference_price,
            ),
            stock,
        )
        for stock in Stock.objects.filter(active=True)
    }


def last_step() -> int:
    return Stock.objects.order_by("-step").values_list("step", flat=True).first() or 0


def history(symbol: str, *, limit: int) -> list[dict]:
    """The last ``limit`` prices of ``symbol``, oldest first."""
    rows = (
        PricePoint.objects.filter(stock__symbol=symbol).order_by("-step").values("step", "seq", "price", "ts")[:limit]
    )
    return [{"step": r["step"], "seq": r["seq"], "price": float(r["price"]), "ts": r["ts"]} for r in reversed(rows)]
