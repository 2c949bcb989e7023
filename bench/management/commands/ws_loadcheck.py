"""Connect N WebSocket clients to a running site, subscribe each to all symbols, and report lost updates, frames
per client and end-to-end latency. Every client comes from one address: start the site with
TICKER_MAX_CONNECTIONS_PER_ADDRESS=0 (and TICKER_MAX_CONNECTIONS=0 past 2,500 clients), or the clients past
its share (250 by default, issue 21) are closed with 1013 and reported in "errors"."""

import asyncio
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bench.deps import require
from bench.loadcheck import run_check
from bench.proc import raise_fd_limit
from ticker.runtime.gc_schedule import freeze_startup_objects


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--url", default="ws://127.0.0.1:8000/ws/quotes/")
        parser.add_argument("--clients", type=int, default=1000)
        parser.add_argument("--duration", type=float, default=30.0, help="seconds to count for")
        parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")

    def handle(self, *args, url, clients, duration, out, **options):
        if clients < 1 or duration <= 0:
            raise CommandError("--clients must be at least 1 and --duration positive.")
        require("ws_loadcheck", ["websockets"])
        raise_fd_limit(clients + 100)
        freeze_startup_objects()
        result = asyncio.run(run_check(url=url, clients=clients, duration=duration))
        text = json.dumps(result, indent=2)
        self.stdout.write(text)
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n")
        if result["connected"] < clients or result["lost_updates"]:
            raise CommandError(f"{clients - result['connected']} clients failed, {result['lost_updates']} updates lost")
