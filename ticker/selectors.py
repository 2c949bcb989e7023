"""Reads. Every function here is synchronous; async callers wrap it once."""

from __future__ import annotations

from collections.abc import Iterable

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
