import json
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench import alerts, personal_cost, reports
from bench.rig import Rig
from ticker.runtime.gc_schedule import freeze_startup_objects


class Command(BaseCommand):
    help = (
        "Personal frames (issue 23): (1) a step's N alert fires sent as a group per user vs one routed message, "
        "the publisher's cost and the delivery time on the Redis channel layer; (2) N signed-in users on one daphne "
        "process with one alert each a step: fire latency, fires lost, and the broadcast's server CPU per frame "
        "with and without the fires. Writes results.json and results.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fires", default="100,1000,2000", help="part 1: fires a step (comma list)")
        parser.add_argument("--fire-steps", type=int, default=5, help="part 1: steps of each way per count")
        parser.add_argument("--users", type=int, default=2000, help="part 2: signed-in clients (0: skip part 2)")
        parser.add_argument(
            "--alerts-per-step", type=int, default=None, help="part 2: fires a step, users in turn (default: each user)"
        )
        parser.add_argument("--rounds", type=int, default=3, help="part 2: pairs of windows, without then with")
        parser.add_argument("--duration", type=float, default=10.0, help="part 2: seconds measured per window")
        parser.add_argument("--settle", type=float, default=3.0, help="part 2: seconds to wait after connecting")
        parser.add_argument("--interval", type=int, default=settings.MARKET_INTERVAL_MS, help="market step, ms")
        parser.add_argument(
            "--database",
            default=None,
            help="a PostgreSQL server (postgres://user@host:port/) to make the rig's database on (default: SQLite)",
        )
        parser.add_argument("--out", type=Path, default=Path("bench-results/alerts"))

    def handle(
        self, *args, fires, fire_steps, users, alerts_per_step, rounds, duration, settle, interval, database, out, **_
    ):
        try:
            counts = [int(n) for n in fires.split(",") if n.strip()] if fires.strip() else []
        except ValueError:
            raise CommandError("--fires is a comma list of fire counts") from None
        per_step_bad = alerts_per_step is not None and not 1 <= alerts_per_step <= max(users, 1)
        if any(n < 1 for n in counts) or fire_steps < 1 or users < 0 or rounds < 1 or duration <= 0 or settle < 0:
            raise CommandError(
                "--fires positive counts; --fire-steps, --rounds at least 1; --users not negative; "
                "--duration positive; --settle not negative"
            )
        if per_step_bad:
            raise CommandError("--alerts-per-step is from 1 to --users")
        freeze_startup_objects()
        try:
            compared, delivered = self.run(
                counts, fire_steps, users, alerts_per_step, rounds, duration, settle, interval, database, out
            )
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        config = {
            "fires": counts,
            "fire_steps": fire_steps,
            "users": users,
            "alerts_per_step": alerts_per_step or users,
            "rounds": rounds,
            "duration_s": duration,
            "market_interval_ms": interval,
            "database": "postgresql" if database else "sqlite",
            "machine": reports.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        lines = personal_cost.ratios(compared) + alerts.ratios(delivered)
        data = {"config": config, "routing": compared, "delivery": delivered, "ratios": lines}
        (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
        table = alerts.markdown(config, compared, delivered, lines)
        (out / "results.md").write_text(table)
        self.stdout.write(table)
        self.stdout.write(f"\nWrote {out / 'results.json'}, {out / 'results.md'}\n")

    def run(self, counts, fire_steps, users, per_step, rounds, duration, settle, interval, database, out):
        compared, delivered = [], []
        out.mkdir(parents=True, exist_ok=True)
        with Rig(interval_ms=interval, name="alerts", log=self.say, database=database) as rig:
            if counts:
                self.say(f"group per user vs one routed message: {', '.join(map(str, counts))} fires a step ...")
                prefix = f"{rig.env['TICKER_CHANNEL_PREFIX']}cmp"
                compared = personal_cost.compare(
                    rig.redis.url, prefix, counts, steps=fire_steps, interval_s=interval / 1000, log=self.say
                )
            if users:
                self.say(
                    f"{users} signed-in users on one daphne process, {per_step or users} alerts a step, "
                    f"{rounds} x (without, with) alerts ..."
                )
                try:
                    delivered = alerts.delivery(
                        rig, users, per_step=per_step, rounds=rounds, seconds=duration, settle=settle, log=self.say
                    )
                finally:
                    rig.keep_log(out / "servers.log")  # the market's and the web process's own lines
        return compared, delivered

    def say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
