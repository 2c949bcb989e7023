import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ticker.market.loop import interval_problem, run_market
from ticker.ops import metrics
from ticker.ops import registry as ops
from ticker.runtime.gc_schedule import freeze_startup_objects


class Command(BaseCommand):
    help = (
        "Run the simulated market: step prices, store them, publish each step to the channel layer. Run two: "
        "one leads, the other stands by and takes over when the leader stops or dies."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval",
            type=int,
            default=settings.MARKET_INTERVAL_MS,
            help="milliseconds between steps (default %(default)s)",
        )
        parser.add_argument("--run-for", type=float, default=None, help="stop after this many seconds")
        parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible market")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.MARKET_METRICS_PORT,
            help="serve the market's Prometheus metrics on this port (default MARKET_METRICS_PORT, 0: off)",
        )
        parser.add_argument(
            "--metrics-address",
            default=settings.MARKET_METRICS_ADDRESS,
            help="address for --metrics-port (default MARKET_METRICS_ADDRESS, %(default)s)",
        )

    def handle(self, *args, interval, run_for, seed, metrics_port, metrics_address, **options):
        if interval < 10:
            raise CommandError("--interval must be at least 10 milliseconds.")
        if run_for is not None and run_for <= 0:
            raise CommandError("--run-for must be a positive number of seconds.")
        if problem := interval_problem(interval):
            raise CommandError(f"--interval {interval}: {problem}.")
        if not 0 <= metrics_port <= 65535:
            raise CommandError("--metrics-port must be a TCP port (1-65535), or 0 for no metrics.")
        if metrics_port:
            try:
                metrics.serve_market_metrics(metrics_port, metrics_address)
            except OSError as error:
                raise CommandError(
                    f"cannot serve metrics on {metrics_address}:{metrics_port} ({error}): "
                    "pick a free port with --metrics-port or MARKET_METRICS_PORT"
                ) from None
        freeze_startup_objects()
        steps = asyncio.run(_run(interval_ms=interval, run_for=run_for, seed=seed))
        self.stdout.write(f"market stopped after {steps} steps")


async def _run(**options) -> int:
    """The market, reporting to the operations view (ticker.ops.registry) while it runs."""
    async with ops.reporting("market", ops.market_report):
        return await run_market(**options)
