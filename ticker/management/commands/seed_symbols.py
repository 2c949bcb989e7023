from django.core.management.base import BaseCommand, CommandError

from ticker.market import services
from ticker.models import Stock


class Command(BaseCommand):
    help = "List generated, clearly simulated symbols (SIM0001, ...) until --total symbols are active. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--total", type=int, required=True, help="how many active symbols there should be")

    def handle(self, *args, total, **options):
        if not 1 <= total <= 100_000:
            raise CommandError("--total must be from 1 to 100000 symbols.")
        added = services.seed_symbols(total=total)
        active = Stock.objects.filter(active=True).count()
        self.stdout.write(f"listed {added} simulated symbol(s); {active} symbols are active")
