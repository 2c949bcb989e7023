"""Writes. Keyword-only functions; each step's database work is one transaction."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

from ticker.market import alert_fire, selectors
from ticker.market import alerts as alert_book
from ticker.market import lease as leases
from ticker.market.alert_rows import array_literal
from ticker.market.lease import Lease
from ticker.market.prices import CANDLE_MS, Candle, Market, Session, Tick, dt_years, quantize
from ticker.models import SECTORS, MarketState, Stock
from ticker.models import Candle as StoredCandle
from ticker.ops import metrics

log = logging.getLogger(__name__)

# The market's own columns of ticker_stock, in the order _live_row gives them.
LIVE_COLUMNS = (
    "price",
    "seq",
    "step",
    "quoted_at",
    "prev_close",
    "open",
    "high",
    "low",
    "volume",
    "candle_time",
    "candle_open",
    "candle_high",
    "candle_low",
    "candle_volume",
)


@dataclass(frozen=True, slots=True)
class StepResult:
    step: int
    ticks: list[Tick]
    delisted: list[str] = field(default_factory=list)
    # The trading session at this step (None only from tests that build a result by hand).
    session: Session | None = None
    # The alerts this step fired, stored with it (published after the commit as one personal message).
    fires: list[alert_book.Fire] = field(default_factory=list)


def market_open(*, interval_ms: int, seed: int | None, speed: float | None = None) -> Market:
    """Build the market from the persisted prices, so a restart continues where it stopped.

    The session of the last stored step comes back too, so a close or an open
    that passed while the market was down is applied on the first step.
    """
    ticks = {tick.symbol: tick for tick in selectors.latest_ticks()}
    market = Market(
        {},
        dt=dt_years(interval_ms / 1000, speed or settings.MARKET_SPEED),
        seed=seed,
        # A quiet step changes no stock, so the stocks alone could give a step number
        # already published; the lease row keeps the last step its holder stored.
        step=max(selectors.last_step(), leases.last_step()),
        schedule=selectors.schedule(),
        session=selectors.stored_session(),
    )
    for tick in ticks.values():
        # Quote every symbol once on start: whatever changed while the market was
        # down (a halt, a resume) reaches clients, and seq still grows by one.
        market.add(tick, announce=True)
    return market


def market_step(
    *,
    market: Market,
    ts: int,
    candle_minutes: int | None = None,
    lease: Lease | None = None,
    alerts: alert_book.AlertBook | None = None,
) -> StepResult:
    """Step the market once and persist it; called once per step by run_market.

    Reads the operator's controls (so admin edits apply on the next step),
    steps the pure model, then writes the changed stocks (one statement), the
    candles finished this step (once a minute) and the session, in one
    transaction. There is no per-step history: at 5,000 symbols its inserts
    and index updates were half of a step and grew with the table
    (docs/benchmarks.md, "The market at 5,000 symbols"); charts read candles.
    If the write fails the market is rolled back, so the published ``seq``
    never runs ahead of what is stored.

    With ``lease`` (run_market always passes its own) the step first renews
    the market lease in the same transaction, and raises ``LeaseLost`` with
    nothing stored if another market has taken it over (ticker/market/lease.py).
    Without one the step is unfenced: tests and the step-time benchmark.

    With ``alerts`` (run_market passes the book it loaded with the lease) the
    step also fires the armed alerts its quotes satisfy, in the same
    transaction, before the writes (ticker/market/alerts.py); the result
    carries the fires.
    """
    candle_minutes = candle_minutes or settings.MARKET_CANDLE_MINUTES
    checkpoint = market.checkpoint()
    try:
        with transaction.atomic():
            if lease is not None:
                # First, so the lease row stays locked until this step commits.
                leases.renew(lease, step=market.step_no + 1)
            controls = selectors.instruments()
            delisted = [symbol for symbol in market.ticks if symbol not in controls]
            for symbol in delisted:
                market.remove(symbol)
            if new := [symbol for symbol in controls if symbol not in market.ticks]:
                for tick in selectors.latest_ticks(new):
                    market.add(tick, announce=True)
            session_before = market.session
            instruments = {s: instrument for s, (instrument, _pk) in controls.items()}
            # The market tests each new price against the alert book's gate as it makes it (``crossed``).
            changed = market.step(instruments, ts=ts, watch=None if alerts is None else alerts.watch)
            step = market.step_no
            # Right after the step, while its quotes are still in the CPU's caches (py-spy: ~1 us a quote after
            # the step's writes, ~0.35 us before).
            fires = _fire_alerts(alerts, changed=market.crossed, market=market, step=step, ts=ts)
            ids = {s: pk for s, (_instrument, pk) in controls.items()}
            if changed:
                _store_live_columns(changed, ids=ids, step=step)
            if market.finished:
                _store_candles(market.finished, ids=ids)
                # Candles finish at the turn of a minute: prune then, once.
                newest = max(candle.time for _symbol, candle in market.finished)
                StoredCandle.objects.filter(time__lte=newest - candle_minutes * CANDLE_MS).delete()
            if market.session != session_before:
                _store_session(market.session)
    except Exception:
        market.restore(checkpoint)
        if alerts is not None:
            alerts.forget_gates()  # worked out in this step, maybe with a previous close it rolled back
        raise
    if alerts is not None:
        alerts.forget(fires)
    return StepResult(step=step, ticks=changed, delisted=delisted, session=market.session, fires=fires)


def _fire_alerts(
    book: alert_book.AlertBook | None, *, changed: list[Tick], market: Market, step: int, ts: int
) -> list[alert_book.Fire]:
    """The step's alert fires (stored in the caller's transaction), timed for the market's metrics."""
    if book is None:
        return []
    started = time.perf_counter()
    fires = alert_fire.evaluate(book, changed=changed, quotes=market.ticks, step=step, ts=ts)
    metrics.alerts_evaluated(time.perf_counter() - started, fired=len(fires), armed=len(book) - len(fires))
    return fires


def _live_row(tick: Tick, step: int) -> tuple:
    candle = tick.candle
    return (
        tick.price,
        tick.seq,
        step,
        tick.ts,
        tick.prev_close,
        tick.open,
        tick.high,
        tick.low,
        tick.volume,
        None if candle is None else candle.time,
        None if candle is None else candle.open,
        None if candle is None else candle.high,
        None if candle is None else candle.low,
        0 if candle is None else candle.volume,
    )


# PostgreSQL's types for LIVE_COLUMNS, for the arrays of the one UPDATE.
_PG_TYPES = ("numeric", "bigint", "bigint", "bigint") + ("numeric",) * 4 + ("bigint", "bigint") + ("numeric",) * 3
_PG_TYPES += ("bigint",)


def _store_live_columns(ticks: list[Tick], *, ids: dict[str, int], step: int) -> None:
    """Write only the market's own columns, so an admin edit in flight is not overwritten.

    One statement per step. On PostgreSQL an ``UPDATE ... FROM unnest(...)``
    with one array parameter per column (docs/benchmarks.md, "The market at
    5,000 symbols"); on SQLite, where a statement is a loop in C anyway, one
    executemany of a plain UPDATE by primary key. Never ``bulk_update``: its
    CASE/WHEN expressions took ~85% of a step at 30 symbols.
    """
    table = connection.ops.quote_name(Stock._meta.db_table)
    quoted = [connection.ops.quote_name(c) for c in LIVE_COLUMNS]
    rows = [(*_live_row(t, step), ids[t.symbol]) for t in ticks]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            assignments = ", ".join(f"{q} = v.{q}" for q in quoted)
            arrays = ", ".join(f"%s::{t}[]" for t in (*_PG_TYPES, "bigint"))
            cursor.execute(
                f"UPDATE {table} AS s SET {assignments} "  # noqa: S608
                f"FROM unnest({arrays}) AS v({', '.join(quoted)}, id) WHERE s.id = v.id",
                [array_literal(column) for column in zip(*rows, strict=True)],
            )
        else:
            assignments = ", ".join(f"{q} = %s" for q in quoted)
            cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", rows)  # noqa: S608


def _insert(model, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert many rows in one go: COPY on PostgreSQL, one executemany on SQLite (no model instances either way)."""
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608


def _store_candles(finished: list[tuple[str, Candle]], *, ids: dict[str, int]) -> None:
    """Store the candles a step finished (at most one per symbol, at the turn of a minute)."""
    _insert(
        StoredCandle,
        ("stock_id", "time", "open", "high", "low", "close", "volume"),
        [(ids[s], c.time, c.open, c.high, c.low, c.close, c.volume) for s, c in finished if s in ids],
    )


def _store_session(session: Session) -> None:
    MarketState.objects.update_or_create(
        pk=MarketState.ONE,
        defaults={
            "session_state": session.state,
            "session_until": session.until,
            "session_number": session.number,
        },
    )


SIMULATED_PREFIX = "SIM"


def seed_symbols(*, total: int) -> int:
    """List generated, clearly simulated symbols until ``total`` are active; return how many were added.

    Symbols are ``SIM0001``, ``SIM0002``, ... named "Simulated Co. 0001" and
    so on, each with a sector from the fixed list and a price, volatility and
    drift drawn from a generator seeded with its number, so every database
    gets the same ones. Idempotent: numbers already taken (active or not) are
    skipped, nothing is changed or reactivated, and the seeded names stay.
    """
    active = Stock.objects.filter(active=True).count()
    taken = set(Stock.objects.filter(symbol__startswith=SIMULATED_PREFIX).values_list("symbol", flat=True))
    new: list[Stock] = []
    number = 0
    while active + len(new) < total:
        number += 1
        symbol = f"{SIMULATED_PREFIX}{number:04d}"
        if symbol not in taken:
            new.append(_simulated_stock(number, symbol))
    Stock.objects.bulk_create(new, batch_size=500)
    return len(new)


def _simulated_stock(number: int, symbol: str) -> Stock:
    rng = random.Random(number)
    price = quantize(math.exp(rng.uniform(math.log(5), math.log(500))))
    return Stock(
        symbol=symbol,
        name=f"Simulated Co. {number:04d}",
        sector=SECTORS[rng.randrange(len(SECTORS))],
        price=price,
        reference_price=price,
        volatility=round(rng.uniform(0.15, 0.6), 2),
        drift=round(rng.uniform(0.0, 0.1), 3),
    )
