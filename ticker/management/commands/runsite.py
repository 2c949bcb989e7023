import os

from django.core.management.base import BaseCommand, CommandError

from ticker.runtime.launcher import run_site


class Command(BaseCommand):
    help = "Run the whole site (migrations, admin account in development, Redis, daphne, market)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args, host, port, **options):
        if not 0 < port < 65536:
            raise CommandError("--port must be between 1 and 65535.")
        code = run_site(host=host, port=port, stdout=self.stdout)
        if code:
            raise SystemExit(code)
