"""Writes. Keyword-only functions; each step's database work is one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

from . import selectors
from .market import Market, Tick, dt_years
from .models import PricePoint, Stock

log = logging.getLogger(__name__)

# Old history is deleted every this many steps, not every step.
PRUNE_EVERY_STEPS = 40


@dataclass(frozen=True, slots=True)
class StepResult:
    step: int
    ticks: list[Tick]
    delisted: list[str] = field(default_factory=list)


def market_open(*, interval_ms: int, seed: int | None, speed: float | None = None) -> Market:
    """Build the market from the persisted prices, so a restart continues where it stopped."""
    ticks = {tick.symbol: tick for tick in selectors.latest_ticks()}
    market = Market(
        {}, dt=dt_years(interval_ms / 1000, speed or settings.MARKET_SPEED), seed=seed, step=selectors.last_step()
    )
    for tick in ticks.values():
        # Quote every symbol once on start: whatever changed while the market was
        # down (a halt, a resume) reaches clients, and seq still grows by one.
        market.add(tick, announce=True)
    return market


def market_step(*, market: Market, ts: int, history_steps: int | None = None) -> StepResult:
    """Step the market once and persist it; called once per step by run_market.

    Reads the operator's controls (so admin edits apply on the next step),
    steps the pure model, then writes the changed prices and their history in
    one transaction. If the write fails the market is rolled back, so the
    published ``seq`` never runs ahead of what is stored.
    """
    history_steps = history_steps or settings.MARKET_HISTORY_STEPS
    checkpoint = market.checkpoint()
    try:
        with transaction.atomic():
            controls = selectors.instruments()
            delisted = [symbol for symbol in market.ticks if symbol not in controls]
            for symbol in delisted:
                market.remove(symbol)
            for symbol, (_instrument, stock) in controls.items():
                if symbol not in market.ticks:
                    market.add(selectors.tick_of(stock), announce=True)
            changed = market.step({s: instrument for s, (instrument, _stock) in controls.items()}, ts=ts)
            step = market.step_no
            if changed:
                stocks = {s: stock for s, (_i, stock) in controls.items()}
                rows = []
                for tick in changed:
                    stock = stocks[tick.symbol]
                    stock.price, stock.seq, stock.step, stock.quoted_at = tick.price, tick.seq, step, tick.ts
                    rows.append(stock)
                _store_live_columns(rows)
                PricePoint.objects.bulk_create(
                    PricePoint(stock=stocks[t.symbol], step=step, seq=t.seq, price=t.price, ts=t.ts) for t in changed
                )
            if step % PRUNE_EVERY_STEPS == 0:
                PricePoint.objects.filter(step__lte=step - history_steps).delete()
    except Exception:
        market.restore(checkpoint)
        raise
    return StepResult(step=step, ticks=changed, delisted=delisted)


def _store_live_columns(stocks: list[Stock]) -> None:
    """Write only the market's own columns, so an admin edit in flight is not overwritten.

    One executemany of a plain UPDATE instead of ``bulk_update``: profiling
    the step (docs/benchmarks.md, "Profiling the market step") showed
    bulk_update's CASE/WHEN expression building took ~85% of each step.
    """
    table = connection.ops.quote_name(Stock._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET price = %s, seq = %s, step = %s, quoted_at = %s WHERE id = %s",  # noqa: S608
            [(s.price, s.seq, s.step, s.quoted_at, s.pk) for s in stocks],
        )
