"""``python manage.py seed_alerts --users N --alerts M``: simulated users and armed alerts near current prices."""

from django.core.management.base import BaseCommand, CommandError

from ticker.market import alert_seed


class Command(BaseCommand):
    help = (
        "Make simulated users (sim-user-00001, ...: unusable passwords) and armed price alerts spread over the "
        "listed symbols near their current prices, for benchmarks and tests. Running it again tops up to --alerts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=100, help="simulated users (default %(default)s)")
        parser.add_argument("--alerts", type=int, default=1000, help="armed alerts they hold (default %(default)s)")
        parser.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")

    def handle(self, *args, users, alerts, seed, **options):
        if users < 1 or alerts < 0:
            raise CommandError("--users must be at least 1 and --alerts at least 0.")
        try:
            made = alert_seed.seed_alerts(users=users, alerts=alerts, seed=seed)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{made} alerts made: {users} simulated users hold {alerts} armed alerts")
