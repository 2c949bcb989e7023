"""The capacity model's database figure (docs/scaling.md): what one market step writes, at N symbols.

In this process, on the configured database (a throwaway one: it lists N simulated symbols and stores steps):
the market takes the lease and loads its alert book as ``run_market`` does, then runs ``services.market_step``
back to back with both, a simulated clock 250 ms apart inside one open session (as ``market_steptime``). Over
the measured steps it counts the statements Django sends (``execute`` calls, ``executemany`` calls and their
parameter sets) and, on PostgreSQL, the database's own counters (``pg_stat_database``: commits, rows
inserted, updated, deleted and fetched; the two flushes of the counters add a few commits to the total).
"""

from __future__ import annotations

import statistics
import time

from django.db import connection

from ticker.market import alerts, selectors, services
from ticker.market import lease as leases

PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_fetched")


class StatementCounter:
    """A Django execute wrapper: how many statements, and how many rows in executemany calls."""

    def __init__(self):
        self.execute = self.executemany = self.executemany_rows = 0

    def __call__(self, execute, sql, params, many, context):
        if many:
            self.executemany += 1
            params = list(params)
            self.executemany_rows += len(params)
        else:
            self.execute += 1
        return execute(sql, params, many, context)


def pg_counters() -> dict | None:
    """This database's pg_stat_database row, after flushing this backend's pending statistics (PostgreSQL 15)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(0.05)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = current_database()"  # noqa: S608
        )
        return dict(zip(PG_COUNTERS, cursor.fetchone(), strict=True))


def step_writes(*, symbols: int, steps: int, warmup: int, interval_ms: int = 250) -> dict:
    """Statements and rows per market step at ``symbols``, with the lease and the alert book as run_market."""
    services.seed_symbols(total=symbols)
    held, _row = leases.acquire(holder=leases.holder_id())
    if held is None:
        raise RuntimeError("the market lease is held by a running market: use a database of its own")
    book = alerts.AlertBook.load()
    market = services.market_open(interval_ms=interval_ms, seed=1)
    ts = selectors.open_through(selectors.schedule(), time.time_ns() // 1_000_000, (warmup + steps + 1) * interval_ms)
    counter, changed, step_ms = StatementCounter(), [], []
    before = None
    try:
        for i in range(warmup + steps):
            ts += interval_ms
            if i == warmup:
                before = pg_counters()
            started = time.perf_counter()
            if i >= warmup:
                with connection.execute_wrapper(counter):
                    result = services.market_step(market=market, ts=ts, lease=held, alerts=book)
                changed.append(len(result.ticks))
                step_ms.append((time.perf_counter() - started) * 1000)
            else:
                services.market_step(market=market, ts=ts, lease=held, alerts=book)
        after = pg_counters()
    finally:
        leases.release(held)
    figures = {
        "vendor": connection.vendor,
        "symbols": len(market.ticks),
        "steps": steps,
        "changed_per_step_median": statistics.median(changed),
        "step_ms_median": round(statistics.median(step_ms), 2),
        "statements_per_step": round((counter.execute + counter.executemany) / steps, 2),
        "execute_per_step": round(counter.execute / steps, 2),
        "executemany_per_step": round(counter.executemany / steps, 2),
        "executemany_rows_per_step": round(counter.executemany_rows / steps, 2),
    }
    if before is not None and after is not None:
        figures["pg_stat_database_per_step"] = {k: round((after[k] - before[k]) / steps, 2) for k in PG_COUNTERS}
    return figures
