import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench import capacity, capacity_db, capacity_shards, reports
from bench.rig import Rig


class Command(BaseCommand):
    help = (
        "The capacity model's figures (docs/scaling.md). Part redis: a private redis-server, the real run_market at "
        "N symbols and K followers of the quotes group; per K, Redis CPU and bytes, the batch's size and lag, the "
        "group_send time. Part database: statements and rows per market step on the configured (throwaway) "
        "database. Writes results.json and results.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--part", default="redis", help="a comma list of redis, database, shards")
        parser.add_argument("--symbols", type=int, default=5000, help="listed symbols (default %(default)s)")
        parser.add_argument("--subscribers", default="0,1,2,4,8,16", help="redis: K followers per window (list)")
        parser.add_argument("--window", type=float, default=10.0, help="redis: seconds measured per K")
        parser.add_argument("--settle", type=float, default=2.0, help="redis: seconds after the followers join")
        parser.add_argument("--probes", type=int, default=20, help="redis: group_sends timed per K")
        parser.add_argument("--steps", type=int, default=200, help="database: measured steps")
        parser.add_argument("--warmup", type=int, default=20, help="database: steps before measuring")
        parser.add_argument("--interval", type=int, default=settings.MARKET_INTERVAL_MS, help="market step, ms")
        parser.add_argument("--out", type=Path, default=Path("bench-results/capacity"))

    def handle(self, *args, part, symbols, subscribers, window, settle, probes, steps, warmup, interval, out, **_):
        parts = {p.strip() for p in part.split(",") if p.strip()}
        try:
            ks = [int(k) for k in subscribers.split(",") if k.strip()]
        except ValueError:
            raise CommandError("--subscribers is a comma list of follower counts") from None
        if not parts or parts - {"redis", "database", "shards"}:
            raise CommandError("--part is a comma list of redis, database, shards")
        if symbols < 1 or any(k < 0 for k in ks) or window <= 0 or steps < 1 or warmup < 0 or probes < 0:
            raise CommandError("--symbols, --window, --steps positive; --subscribers, --warmup, --probes not negative")
        data = {
            "config": {
                "symbols": symbols,
                "market_interval_ms": interval,
                "machine": reports.machine(),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_average_at_start": capacity.load_average(),
            }
        }
        if "database" in parts:
            self.say(f"database: {steps} steps at {symbols} symbols on {settings.DATABASES['default']['ENGINE']} ...")
            data["database"] = capacity_db.step_writes(
                symbols=symbols, steps=steps, warmup=warmup, interval_ms=interval
            )
            self.say(json.dumps(data["database"]))
        if "redis" in parts:
            # The figure is this redis-server's CPU: never a shared Redis (REDIS_URL), always one of the run's own.
            os.environ.pop("REDIS_URL", None)
            data["config"].update(subscribers=ks, window_s=window, probes=probes)
            data["redis"] = self.redis(symbols, ks, window, settle, probes, interval)
        if "shards" in parts:
            k = max(ks) or 2
            self.say(
                f"shards: {k} members, {probes} group_sends of a {symbols * 73 // 100}-quote batch, 1 then 2 servers"
            )
            data["shards"] = capacity_shards.shard_split(k=k, sends=max(probes, 1), quotes=symbols * 73 // 100)
            self.say(json.dumps(data["shards"]))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
        (out / "results.md").write_text(markdown(data))
        self.stdout.write(markdown(data))
        self.stdout.write(f"\nWrote {out / 'results.json'}, {out / 'results.md'}\n")

    def redis(self, symbols, ks, window, settle, probes, interval) -> dict:
        rows = []
        with Rig(interval_ms=interval, name="capacity", log=self.say, universe=symbols) as rig:
            if not rig.redis.process:
                raise CommandError("bench_capacity needs redis-server installed: it measures a Redis of its own")
            probe = capacity.RedisProbe(rig.redis.url)
            sample = asyncio.run(capacity.capture_batch(rig.redis.url, rig.env["TICKER_CHANNEL_PREFIX"]))
            packed = capacity.serialize_ms(sample)
            self.say(f"market quoting {rig.symbols} symbols; a batch carries {len(sample['quotes'])} quotes: {packed}")
            with tempfile.TemporaryDirectory(prefix="ticker-capacity-") as tmp:
                for k in ks:
                    row = capacity.run_window(
                        rig, probe, k, seconds=window, settle=settle, probes=probes, sample=sample, tmp=Path(tmp)
                    )
                    rows.append(row)
                    self.say(json.dumps(row))
        fits = {}
        if len({r["subscribers"] for r in rows}) > 1:
            fits = {
                key: capacity.fit(rows, key)
                for key in (
                    "redis_cpu_share",
                    "redis_cpu_ms_per_step",
                    "redis_out_bytes_per_step",
                    "market_cpu_ms_per_step",
                )
            }
            fits["group_send_ms_p50"] = capacity.fit(
                [{**r, "p50": r["group_send_ms"]["p50"] or 0.0} for r in rows], "p50"
            )
            fits["group_send_cpu_ms_median"] = capacity.fit(
                [{**r, "cpu": r["group_send_cpu_ms_median"] or 0.0} for r in rows], "cpu"
            )
        return {"rows": rows, "fits": fits, "quotes_in_sample": len(sample["quotes"]), "serialize_one_copy": packed}

    def say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()


def markdown(data: dict) -> str:
    config = data["config"]
    lines = [
        f"Machine: {config['machine']}. {config['date']}. {config['symbols']} symbols, market step "
        f"{config['market_interval_ms']} ms; load average at start {config['load_average_at_start']}.",
        "",
    ]
    if "database" in data:
        lines += ["Database, per market step:", "", "```", json.dumps(data["database"], indent=2), "```", ""]
    if "shards" in data:
        lines += ["One group on 1, then 2 Redis servers:", "", "```", json.dumps(data["shards"], indent=2), "```", ""]
    if "redis" in data:
        one = data["redis"]["serialize_one_copy"]
        lines += [
            f"A captured batch of {data['redis']['quotes_in_sample']} quotes: {one['bytes']:,} bytes as channels_redis "
            f"stores it, {one['cpu_ms_median']} ms CPU to serialize one copy (group_send makes one per member).",
            "",
            "| K | load avg | steps/s | quotes/batch | batch bytes p50 / p99 | Redis CPU (share of a core) | "
            "Redis CPU ms/step | Redis out B/step | Redis in B/step | cmds/s | market CPU ms/step | lag p50 / p99 ms | "
            "follower CPU ms/batch | group_send p50 / p99 ms | group_send CPU ms |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in data["redis"]["rows"]:
            b, lag, gs = r["batch_bytes"], r["lag_ms"], r["group_send_ms"]
            lines.append(
                f"| {r['subscribers']} | {r['load_average']} | {r['steps_per_s']} | {r['quotes_per_batch_median']} | "
                f"{b['p50']} / {b['p99']} | {r['redis_cpu_share']} | {r['redis_cpu_ms_per_step']} | "
                f"{r['redis_out_bytes_per_step']:,} | {r['redis_in_bytes_per_step']:,} | {r['redis_commands_per_s']} | "
                f"{r['market_cpu_ms_per_step']} | {lag['p50']} / {lag['p99']} | "
                f"{r['follower_cpu_ms_per_batch']} | {gs['p50']} / {gs['p99']} | {r['group_send_cpu_ms_median']} |"
            )
        for key, f in data["redis"]["fits"].items():
            lines.append(f"\nFit {key} = {f['a']:.6g} + {f['b']:.6g}·K (r² {f['r2']:.3f}, {f['points']} points)")
    return "\n".join(lines) + "\n"
