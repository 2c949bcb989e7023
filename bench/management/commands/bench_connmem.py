import json
from pathlib import Path

from django.core.management.base import BaseCommand

from bench import connmem
from bench.rig import Rig


class Command(BaseCommand):
    help = (
        "Where a WebSocket connection's memory goes on daphne: RSS growth per connection, and the Python heap's "
        "growth by allocation site and by type under tracemalloc. Writes results.json and results.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=1000)
        parser.add_argument("--frames", type=int, default=12, help="tracemalloc's traceback depth")
        parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after connecting")
        parser.add_argument("--out", default="bench-results/connmem")
        parser.add_argument(
            "--keep-probes", action="store_true", help="keep the servers' probes (tracemalloc snapshots) in OUT/probes"
        )

    def handle(self, *args, clients, frames, settle, out, keep_probes, **options):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with Rig(interval_ms=250, name="connmem", log=self.stdout.write) as rig:
            try:
                result = connmem.run(
                    rig, clients=clients, frames=frames, settle=settle, out=out, log=self.stdout.write, keep=keep_probes
                )
            finally:
                rig.keep_log(out / "servers.log")
        (out / "results.json").write_text(json.dumps(result, indent=2))
        (out / "results.md").write_text(text := connmem.report(result))
        self.stdout.write(text)
