import json
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench import fanout, reports
from bench.deps import require
from bench.rig import Rig
from ticker.runtime.gc_schedule import freeze_startup_objects


class Command(BaseCommand):
    help = (
        "Ramp the number of WebSocket clients on one server process and measure latency, lost frames, server CPU "
        "per frame and memory per connection: the site on daphne and reference servers on the same feed. "
        "Writes results.json, results.md and results.png."
    )

    def add_arguments(self, parser):
        parser.add_argument("--steps", default="500,1000,2000,3000", help="client counts to ramp through (comma list)")
        parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per step")
        parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after connecting")
        names = ",".join(fanout.SERVERS)
        parser.add_argument(
            "--servers",
            default=None,
            help=f"which servers, in order (default {names}; with --universe, ticker only: the references "
            "forward every quote of the market to every client)",
        )
        parser.add_argument(
            "--universe", type=int, default=None, help="list this many symbols (the 30 seeded, then generated ones)"
        )
        parser.add_argument(
            "--watchlist",
            type=int,
            default=None,
            help="with --universe: the site is measured twice, every client on the seeded symbols, then each client "
            "on its own K distinct random symbols of the universe (default 20)",
        )
        parser.add_argument(
            "--compression",
            choices=list(fanout.COMPRESSION),
            default="both",
            help="the site's clients offer permessage-deflate: off, on, or both (the site ramped twice per "
            "workload, without then with; rows NAME and NAME-deflate; on,off for the other order); "
            "default %(default)s",
        )
        parser.add_argument("--generators", type=int, default=1, help="load-generator processes (on core 1)")
        parser.add_argument(
            "--machine", default="5000x2", help="CLIENTSxPROCESSES for the whole-machine run of the site, or 'none'"
        )
        parser.add_argument("--interval", type=int, default=settings.MARKET_INTERVAL_MS, help="market step, ms")
        parser.add_argument("--out", type=Path, default=Path("bench-results/fanout"))

    def handle(
        self,
        *args,
        steps,
        duration,
        settle,
        servers,
        generators,
        machine,
        interval,
        out,
        universe,
        watchlist,
        compression,
        **_,
    ):
        if watchlist is not None and universe is None:
            raise CommandError("--watchlist needs --universe: the number of listed symbols to draw from")
        if universe is not None:
            watchlist = 20 if watchlist is None else watchlist
            if universe < 1 or not 1 <= watchlist <= min(universe, 100):
                raise CommandError("--universe is at least 1; --watchlist from 1 to 100 and at most --universe")
        servers = servers or ("ticker" if universe else ",".join(fanout.SERVERS))
        try:
            counts = sorted({int(s) for s in steps.split(",") if s.strip()})
            chosen = [s.strip() for s in servers.split(",") if s.strip()]
            whole = None if machine == "none" else tuple(int(x) for x in machine.lower().split("x"))
        except ValueError:
            raise CommandError("--steps is a comma list of client counts; --machine is CLIENTSxPROCESSES") from None
        unknown = sorted(set(chosen) - set(fanout.SERVERS))
        bad_machine = whole is not None and (len(whole) != 2 or min(whole) < 1)
        if unknown or not counts or counts[0] < 1 or duration <= 0 or settle < 0 or generators < 1 or bad_machine:
            raise CommandError(
                f"--servers takes a comma list of {', '.join(fanout.SERVERS)}; --steps positive counts; "
                "--duration positive; --settle not negative; --generators at least 1; "
                "--machine CLIENTSxPROCESSES or none"
            )
        # The chart (written last) and the chosen servers' packages, checked before any work.
        require("bench_fanout", ["matplotlib", *(m for name in chosen for m in fanout.SERVERS[name].needs)])
        freeze_startup_objects()
        try:
            rows, symbols, seeded = self.run(
                counts,
                chosen,
                whole,
                duration=duration,
                settle=settle,
                generators=generators,
                interval=interval,
                universe=universe,
                watchlist=watchlist,
                compression=compression,
            )
        except RuntimeError as exc:  # a server, the feed or a load generator would not start: say which
            raise CommandError(str(exc)) from None
        config = {
            "steps": counts,
            "duration_s": duration,
            "market_interval_ms": interval,
            "symbols": symbols,
            "seeded": seeded,
            "universe": universe,
            "watchlist": watchlist if universe else None,
            "compression": compression,
            "machine": reports.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        # Issue 5 states its targets at 2,000 clients: the ratios are taken there when the ramp has that step.
        ratios = fanout.ratios(rows, at=2000 if 2000 in counts else max(counts))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(
            json.dumps({"config": config, "rows": rows, "ratios": ratios}, indent=2) + "\n"
        )
        table = reports.fanout_markdown(config, rows, ratios)
        (out / "results.md").write_text(table)
        reports.fanout_chart(rows, out / "results.png")
        self.stdout.write(table)
        self.stdout.write(f"\nWrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}\n")

    def run(
        self, counts, chosen, whole, *, duration, settle, generators, interval, universe, watchlist, compression
    ) -> tuple[list[dict], int, int]:
        """Every chosen server's ramp, then the whole-machine run: the rows, the feed's symbol count, the seeded."""
        rows = []
        with Rig(interval_ms=interval, name="fanout", log=self.say, universe=universe) as rig:
            for name in chosen:
                # With --universe the site is ramped twice in this run: broadcast, then personal watchlists;
                # with --compression both, each of them twice: its clients without, then with permessage-deflate.
                if name != "ticker":
                    loads = [None]
                elif universe:
                    loads = fanout.workloads(rig.seeded, rig.listed, watchlist, compression)
                else:
                    site = fanout.SERVERS[name]
                    loads = fanout.deflated(fanout.Workload(site.name, site.label), compression)
                for workload in loads:
                    self.say(
                        f"{workload.label if workload else name}: ramping through {', '.join(map(str, counts))} "
                        "clients ..."
                    )
                    rows += fanout.ramp(
                        rig,
                        fanout.SERVERS[name],
                        counts,
                        seconds=duration,
                        settle=settle,
                        generators=generators,
                        log=self.say,
                        workload=workload,
                    )
            if whole:
                self.say(f"ticker on the whole machine: {whole[0]} clients over {whole[1]} daphne processes ...")
                rows.append(fanout.machine(rig, whole[0], whole[1], seconds=duration, settle=settle, log=self.say))
        return rows, rig.symbols, len(rig.seeded)

    def say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
