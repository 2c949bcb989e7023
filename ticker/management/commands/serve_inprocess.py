import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Run daphne and the market in ONE process on the in-memory channel layer "
        "(the run command's fallback when no Redis can be had)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--interval", type=int, default=settings.MARKET_INTERVAL_MS)

    def handle(self, *args, host, port, interval, **options):
        if settings.CHANNEL_LAYER_BACKEND != "memory":
            raise CommandError(
                "serve_inprocess needs TICKER_CHANNEL_LAYER=memory; with Redis, run daphne "
                "and run_market as separate processes."
            )
        # daphne.server installs Twisted's asyncio reactor on import: import it first.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from config.asgi import application
        from ticker.market.loop import run_market

        def start_market():
            # Called by daphne once it listens, on its (asyncio) event loop.
            asyncio.get_event_loop().create_task(run_market(interval_ms=interval, handle_signals=False))

        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            ready_callable=start_market,
        ).run()
