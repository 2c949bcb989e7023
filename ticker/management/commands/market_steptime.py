"""Measure the market's step time at N listed symbols (docs/benchmarks.md, "The market at 5,000 symbols").

Run it against a throwaway database: it lists simulated symbols (seed_symbols)
and steps the market, storing every step as run_market does.

    DATABASE_URL=... python manage.py migrate
    DATABASE_URL=... python manage.py market_steptime --symbols 5000 --steps 1200 --output docs/bench-runs/market/x.json
"""

import json
import platform
import statistics
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from ticker.market import selectors, services
from ticker.models import Candle
from ticker.runtime.gc_schedule import freeze_startup_objects
from ticker.wire import protocol


def percentile(values: list[float], p: float) -> float:
    """Nearest rank, as bench.stats does (bench is not installed outside development)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


class Command(BaseCommand):
    help = "Step the market back to back at N symbols and report its step time (median, p90, p99, max)."

    def add_arguments(self, parser):
        parser.add_argument("--symbols", type=int, default=5000, help="active symbols (default %(default)s)")
        parser.add_argument("--steps", type=int, default=1200, help="measured steps (default %(default)s)")
        parser.add_argument("--warmup", type=int, default=40, help="steps before measuring (default %(default)s)")
        parser.add_argument("--interval", type=int, default=settings.MARKET_INTERVAL_MS, help="simulated ms per step")
        parser.add_argument("--output", default=None, help="also write the figures to this JSON file")

    def handle(self, *args, symbols, steps, warmup, interval, output, **options):
        if symbols < 1 or steps < 1:
            raise CommandError("--symbols and --steps must be positive.")
        services.seed_symbols(total=symbols)
        freeze_startup_objects()
        market = services.market_open(interval_ms=interval, seed=1)
        # Simulated wall clock: the steps follow each other at --interval, so
        # candles finish once a minute of it, as they do in run_market.
        # Inside one open session: steps of a closed market move nothing (a session closes every 6.5 minutes).
        ts = selectors.open_through(selectors.schedule(), time.time_ns() // 1_000_000, (warmup + steps + 1) * interval)
        step_ms, publish_ms, changed, turns = [], [], [], []
        for i in range(warmup + steps):
            ts += interval
            started = time.perf_counter()
            result = services.market_step(market=market, ts=ts)
            stored = time.perf_counter()
            [protocol.quote(t) for t in result.ticks]  # what Publisher.publish adds before group_send
            done = time.perf_counter()
            if i >= warmup:
                step_ms.append((stored - started) * 1000)
                publish_ms.append((done - stored) * 1000)
                changed.append(len(result.ticks))
                if ts % 60_000 < interval:
                    turns.append((stored - started) * 1000)
        figures = {
            "vendor": connection.vendor,
            "symbols": len(market.ticks),
            "steps": steps,
            "interval_ms": interval,
            "speed": settings.MARKET_SPEED,
            "changed_per_step_median": statistics.median(changed),
            "step_ms": {
                "median": round(statistics.median(step_ms), 2),
                "p90": round(percentile(step_ms, 90), 2),
                "p99": round(percentile(step_ms, 99), 2),
                "max": round(max(step_ms), 2),
            },
            "minute_turn_step_ms": [round(t, 2) for t in turns],
            "quote_encoding_ms_median": round(statistics.median(publish_ms), 2),
            "over_interval": sum(t > interval for t in step_ms),
            "candle_rows": Candle.objects.count(),
            "python": platform.python_version(),
        }
        self.stdout.write(json.dumps(figures, indent=2))
        if output:
            with open(output, "w") as f:
                json.dump(figures, f, indent=2)
                f.write("\n")
