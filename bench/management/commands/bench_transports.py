import asyncio
import json
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench import reports
from bench.deps import require
from bench.rig import SITE, Rig, RigError
from bench.transports import TRANSPORTS, Target, ratios, run_transport
from ticker.runtime.gc_schedule import freeze_startup_objects


class Command(BaseCommand):
    help = (
        "Measure WebSocket (whole quotes or deltas, without or with permessage-deflate), SSE, long-polling and "
        "polling side by side: N clients per transport, bytes counted on the client sockets, server CPU from /proc. "
        "Writes results.json, results.md and results.png."
    )

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=200, help="clients per transport (default %(default)s)")
        parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per transport")
        parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
        parser.add_argument("--transports", default=",".join(TRANSPORTS))
        parser.add_argument("--url", default=None, help="a running server (http://HOST:PORT); default: start one")
        parser.add_argument("--server-pid", type=int, default=None, help="with --url: the server's PID, for CPU")
        parser.add_argument("--symbols", default="*", help="what every client follows: * or A,B,C (default *)")
        parser.add_argument("--interval", type=int, default=settings.MARKET_INTERVAL_MS, help="market step, ms")
        parser.add_argument("--out", type=Path, default=Path("bench-results"))

    def handle(
        self, *args, clients, duration, poll_interval, transports, url, server_pid, symbols, interval, out, **options
    ):
        chosen = [t.strip() for t in transports.split(",") if t.strip()]
        unknown = sorted(set(chosen) - set(TRANSPORTS))
        if unknown or not chosen:
            raise CommandError(f"--transports takes a comma list of {', '.join(TRANSPORTS)}")
        if clients < 1 or duration <= 0 or poll_interval <= 0:
            raise CommandError("--clients must be at least 1; --duration and --poll-interval positive.")
        wanted = tuple(s.strip().upper() for s in symbols.split(",") if s.strip()) or ("*",)
        try:
            target = Target.from_url(url, wanted) if url else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        require("bench_transports", ["matplotlib"])  # the chart, written last: checked before any work
        config = {
            "clients": clients,
            "duration_s": duration,
            "poll_interval_s": poll_interval,
            "market_interval_ms": interval,
            "url": url or "local (started by the command)",
            "machine": reports.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        freeze_startup_objects()
        measure = {"clients": clients, "duration": duration, "poll_interval": poll_interval}
        try:
            if target:
                results = self.measure(chosen, target, server_pid=server_pid, **measure)
            else:
                with Rig(interval_ms=interval, name="bench", log=self.say) as rig:
                    web, port = rig.start(SITE)
                    self.say(f"Started daphne (pid {web.pid}) and run_market on http://127.0.0.1:{port}")
                    target = Target("127.0.0.1", port, wanted)
                    try:
                        results = self.measure(chosen, target, server_pid=web.pid, **measure)
                    finally:  # the market's and daphne's own account of the run, beside its figures
                        rig.keep_log(out / "servers.log")
        except RigError as exc:  # the site or its feed would not start: say which, no traceback
            raise CommandError(str(exc)) from None
        out.mkdir(parents=True, exist_ok=True)
        measured = ratios(results)
        (out / "results.json").write_text(
            json.dumps({"config": config, "results": results, "ratios": measured}, indent=2) + "\n"
        )
        table = reports.markdown(config, results, measured)
        (out / "results.md").write_text(table)
        reports.chart(results, out / "results.png")
        self.stdout.write(table)
        kept = f", {out / 'servers.log'}" if (out / "servers.log").exists() and not url else ""
        self.stdout.write(f"\nWrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}{kept}\n")

    def measure(self, chosen, target, *, clients, duration, poll_interval, server_pid) -> list[dict]:
        """Each chosen transport in turn against ``target``: one result row each."""
        results = []
        for transport in chosen:
            self.stdout.write(f"{transport}: {clients} clients for {duration:g} s ...")
            result = asyncio.run(
                run_transport(
                    transport,
                    target,
                    clients=clients,
                    duration=duration,
                    poll_interval=poll_interval,
                    server_pid=server_pid,
                    progress=self.progress,
                )
            )
            self.stdout.write("\n")
            results.append(result)
        return results

    def progress(self, transport, elapsed, duration, frames):
        bar = "#" * int(20 * elapsed / duration)
        self.stdout.write(f"\r{transport:>23} [{bar:<20}] {elapsed:5.1f}/{duration:g} s  {frames} frames", ending="")
        self.stdout.flush()

    def say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
