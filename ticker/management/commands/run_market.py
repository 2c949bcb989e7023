import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ticker.gc_schedule import freeze_startup_objects
from ticker.market_loop import interval_problem, run_market


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

    def handle(self, *args, interval, run_for, seed, **options):
        if interval < 10:
            raise CommandError("--interval must be at least 10 milliseconds.")
        if run_for is not None and run_for <= 0:
            raise CommandError("--run-for must be a positive number of seconds.")
        if problem := interval_problem(interval):
            raise CommandError(f"--interval {interval}: {problem}.")
        freeze_startup_objects()
        steps = asyncio.run(run_market(interval_ms=interval, run_for=run_for, seed=seed))
        self.stdout.write(f"market stopped after {steps} steps")
