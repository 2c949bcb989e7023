"""Measure alert evaluation per market step (docs/benchmarks.md, "Alert evaluation").

Run it against a throwaway database: it lists simulated symbols (seed_symbols), gives simulated users armed
alerts near current prices (seed_alerts), loads the market's alert book and steps the market, storing every step
and its fires as run_market does; it reports the evaluation time per step (median, p90, p99, max).

    DATABASE_URL=... python manage.py migrate
    DATABASE_URL=... python manage.py alerts_steptime --symbols 5000 --users 10000 --alerts 100000 --steps 400
"""

import json
import statistics
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Max

from ticker.management.commands.market_steptime import percentile
from ticker.market import alert_seed, alerts, selectors, services
from ticker.models import Alert, Stock
from ticker.ops import metrics


class Command(BaseCommand):
    help = "Step the market with N armed alerts and report the alert evaluation time per step."

    def add_arguments(self, parser):
        parser.add_argument("--symbols", type=int, default=5000, help="active symbols (default %(default)s)")
        parser.add_argument("--users", type=int, default=10000, help="simulated users (default %(default)s)")
        parser.add_argument("--alerts", type=int, default=100000, help="armed alerts (default %(default)s)")
        parser.add_argument("--steps", type=int, default=400, help="measured steps (default %(default)s)")
        parser.add_argument("--warmup", type=int, default=5, help="steps before measuring (default %(default)s)")
        parser.add_argument(
            "--spread", type=float, default=1.0, help="alerts 0.2%%-5%% from the price times this (default 1)"
        )
        parser.add_argument(
            "--just", type=float, default=0.1, help="share of alerts a cent from firing (default %(default)s)"
        )
        parser.add_argument("--output", default=None, help="also write the figures to this JSON file")

    def handle(self, *args, symbols, users, steps, warmup, spread, just, output, **options):
        armed = options["alerts"]
        if symbols < 1 or steps < 1:
            raise CommandError("--symbols and --steps must be positive.")
        services.seed_symbols(total=symbols)
        interval = settings.MARKET_INTERVAL_MS
        market = services.market_open(interval_ms=interval, seed=1)
        # After any step stored before (a second run on the same database), so no candle's minute comes twice.
        ts = max(time.time_ns() // 1_000_000, (Stock.objects.aggregate(last=Max("quoted_at"))["last"] or 0) + 60_000)
        # Inside one open session: steps of a closed market move nothing and fire nothing.
        ts = selectors.open_through(selectors.schedule(), ts, (warmup + steps + 2) * interval)
        services.market_step(market=market, ts=ts)  # every symbol quoted once, before the alerts are armed
        alert_seed.seed_alerts(users=users, alerts=armed, spread=spread, just=just)
        started = time.perf_counter()
        book = alerts.AlertBook.load()
        load_ms = (time.perf_counter() - started) * 1000
        evaluation_ms, step_ms, fired, changed, parts = [], [], [], [], []
        for i in range(warmup + steps):
            ts += interval
            started = time.perf_counter()
            result = services.market_step(market=market, ts=ts, alerts=book)
            if i >= warmup:
                step_ms.append((time.perf_counter() - started) * 1000)
                evaluation_ms.append(metrics.market.alert_evaluation_seconds * 1000)
                parts.append([t * 1000 for t in book.timings])
                fired.append(len(result.fires))
                changed.append(len(result.ticks))
        gate_ms = _gate_in_step_ms(market, book, ts + interval, interval)
        figures = {
            "vendor": connection.vendor,
            "symbols": len(market.ticks),
            "armed_at_start": armed,
            "spread": spread,
            "just": just,
            "armed_at_end": len(book) - len(book.fired),  # the last step's fires leave it at the next read
            "book_load_ms": round(load_ms, 1),
            "steps": steps,
            "changed_per_step_median": statistics.median(changed),
            "fired_per_step": {"median": statistics.median(fired), "max": max(fired), "total": sum(fired)},
            "evaluation_ms": _summary(evaluation_ms),
            # Its parts: reading what changed since the last step, finding the candidates, checking and storing them.
            "read_ms": _summary([p[0] for p in parts]),
            "find_ms": _summary([p[1] for p in parts]),
            "fire_ms": _summary([p[2] for p in parts]),
            # The steps that fired nothing: the cost of keeping the book current and finding that nothing fires.
            "evaluation_ms_steps_without_fires": _summary(
                [e for e, f in zip(evaluation_ms, fired, strict=True) if not f]
            )
            if 0 in fired
            else None,
            # The gate test the market makes where it makes each price (Market.step(watch=...)): part of the alert
            # work, though it runs in the price loop; and the two together.
            "gate_in_step_ms": _summary(gate_ms),
            "alert_work_with_gate_ms_median": round(statistics.median(evaluation_ms) + statistics.median(gate_ms), 3),
            "step_ms": _summary(step_ms),
            "triggered_rows": Alert.objects.filter(state=Alert.State.TRIGGERED).count(),
        }
        text = json.dumps(figures, indent=2)
        self.stdout.write(text)
        if output:
            with open(output, "w") as f:
                f.write(text + "\n")


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "p90": round(percentile(values, 90), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
    }


def _gate_in_step_ms(market, book, ts: int, interval: int, rounds: int = 200) -> list[float]:
    """What testing each new price against its gate adds to the market's price loop: the same step (the same
    random state, restored after each) timed without and with ``watch``, in alternating order; the differences."""
    instruments = {symbol: instrument for symbol, (instrument, _pk) in selectors.instruments().items()}
    differences = []
    for i in range(rounds):
        state, took = market.checkpoint(), {}
        for watched in (False, True) if i % 2 else (True, False):
            watch = book.watch if watched else None
            started = time.perf_counter()
            market.step(instruments, ts=ts + i * interval, watch=watch)
            took[watched] = time.perf_counter() - started
            market.restore(state)
        differences.append((took[True] - took[False]) * 1000)
    return differences
