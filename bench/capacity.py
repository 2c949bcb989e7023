"""The capacity model's measurements on Redis (docs/scaling.md): what each web process costs the channel layer.

A rig (bench/rig.py: fresh SQLite, a private ``redis-server``, the site's real ``run_market``) lists N symbols;
then, for each K, K **followers** join the ``quotes`` group the way a web process's ``FeedFollower`` does (a
channels_redis ``RedisChannelLayer`` configured as the site's, ``new_channel``, ``group_add``, a ``receive``
loop). A follower is a light Python process (``python -m bench.capacity follow``), not daphne: it has no
clients, so what it costs Redis is what one web process's feed costs it, and its own CPU per batch is a web
process's receive-and-decode cost before any fan-out. Over a fixed window per K this reads redis-server's CPU
(``/proc/PID/stat`` utime+stime, and INFO's ``used_cpu_*``, microseconds) and its network counters
(INFO ``total_net_output_bytes``/``total_net_input_bytes``); each follower records every batch's size as it
came out of Redis (the bytes channels_redis deserializes: msgpack plus its 12-byte random prefix) and its lag
(arrival minus the batch's ``ts``, taken by the market just before ``group_send``). After the window the
command times ``group_send`` of a captured real batch (type changed, so followers skip it) to the same K
members: the market's publishing cost as K grows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import time
from pathlib import Path

from bench.proc import process_cpu_s
from bench.stats import latency_summary

QUOTES_GROUP, BATCH_EVENT, PROBE_EVENT = "quotes", "quote.batch", "capacity.probe"


def layer_for(url: str, prefix: str):
    """A channels_redis core layer with the site's settings (config/settings.py, CHANNEL_LAYERS)."""
    from channels_redis.core import RedisChannelLayer

    return RedisChannelLayer(hosts=[url], prefix=prefix, capacity=100, group_expiry=300, expiry=60)


async def _follow(url: str, prefix: str, ready: Path) -> dict:
    layer = layer_for(url, prefix)
    sizes: list[int] = []
    deserialize = layer.deserialize

    def measured(content: bytes):  # the exact bytes channels_redis popped from Redis for this message
        sizes.append(len(content))
        return deserialize(content)

    layer.deserialize = measured
    channel = await layer.new_channel()
    await layer.group_add(QUOTES_GROUP, channel)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.to_thread(ready.write_text, channel)
    batches = []  # (arrival unix s, step, quotes, bytes, lag ms, own CPU s so far)
    probes = 0
    receiving = asyncio.ensure_future(layer.receive(channel))
    while not stop.is_set():
        done, _ = await asyncio.wait({receiving}, timeout=0.5)
        if not done:
            continue
        message = receiving.result()
        receiving = asyncio.ensure_future(layer.receive(channel))
        now = time.time()
        if message.get("type") == BATCH_EVENT:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            lag = now * 1000 - message["ts"]
            batches.append(
                (now, message["step"], len(message["quotes"]), sizes[-1], lag, usage.ru_utime + usage.ru_stime)
            )
        elif message.get("type") == PROBE_EVENT:
            probes += 1
    receiving.cancel()
    await layer.group_discard(QUOTES_GROUP, channel)
    return {"channel": channel, "batches": batches, "probes": probes}


def follow_command(url: str, prefix: str, ready: Path, out: Path) -> tuple[str, ...]:
    return (sys.executable, "-m", "bench.capacity", "follow", url, prefix, str(ready), str(out))


class RedisProbe:
    """redis-server's counters: CPU from /proc and INFO, bytes in and out, commands."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self.pid = int(self.client.info("server")["process_id"])

    def read(self) -> dict:
        info = self.client.info("all")
        return {
            "at": time.monotonic(),
            "proc_cpu_s": process_cpu_s(self.pid),
            "info_cpu_s": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "net_out": int(info["total_net_output_bytes"]),
            "net_in": int(info["total_net_input_bytes"]),
            "commands": int(info["total_commands_processed"]),
            # Per command: calls and microseconds inside Redis (INFO commandstats).
            "commandstats": {
                key.removeprefix("cmdstat_"): (value["calls"], value["usec"])
                for key, value in info.items()
                if key.startswith("cmdstat_")
            },
        }


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_window(rig, redis: RedisProbe, k: int, *, seconds: float, settle: float, probes: int, sample, tmp: Path):
    """One K: start K followers, measure ``seconds``, time ``probes`` group_sends; the row."""
    url, prefix = rig.redis.url, rig.env["TICKER_CHANNEL_PREFIX"]
    followers = []
    for i in range(k):
        ready, out = tmp / f"k{k}-{i}.ready", tmp / f"k{k}-{i}.json"
        followers.append((rig.spawn(follow_command(url, prefix, ready, out)), ready, out))
    deadline = time.monotonic() + 60
    while not all(ready.exists() for _, ready, _ in followers):
        if time.monotonic() > deadline or any(p.poll() is not None for p, _, _ in followers):
            raise RuntimeError(f"followers did not join the quotes group:\n{rig.output_tail()}")
        time.sleep(0.05)
    time.sleep(settle)
    market = rig.market.pid
    load, before, t0, market_before = load_average(), redis.read(), time.time(), process_cpu_s(market)
    time.sleep(seconds)
    after, t1, market_after = redis.read(), time.time(), process_cpu_s(market)
    sends, send_cpu = asyncio.run(time_group_sends(url, prefix, sample, probes)) if sample and probes else ([], [])
    results = []
    for process, _ready, out in followers:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
        rig.processes.remove(process)
        results.append(json.loads(out.read_text()))
    row = window_row(k, before, after, t0, t1, results, sends, load)
    row["group_send_cpu_ms_median"] = _median(send_cpu)
    steps = max(row["steps"], 1) if k else round((t1 - t0) * 1000 / rig_interval(rig))
    row["market_cpu_ms_per_step"] = round((market_after - market_before) * 1000 / steps, 1)
    row["redis_cpu_ms_per_step"] = round(row["redis_cpu_info_s"] * 1000 / steps, 2)
    row["redis_out_bytes_per_step"] = round(row["redis_out_bytes_per_s"] * row["window_s"] / steps)
    row["redis_in_bytes_per_step"] = round(row["redis_in_bytes_per_s"] * row["window_s"] / steps)
    return row


def rig_interval(rig) -> int:
    """The rig market's step in ms (its command line's --interval)."""
    args = list(rig.market.args)
    return int(args[args.index("--interval") + 1])


def window_row(k, before, after, t0, t1, results, sends, load) -> dict:
    span = after["at"] - before["at"]
    inside = [[b for b in r["batches"] if t0 <= b[0] <= t1] for r in results]
    steps = len({b[1] for batches in inside for b in batches})
    sizes = sorted(b[3] for batches in inside for b in batches)
    lags = [b[4] for batches in inside for b in batches]
    follower_cpu = [(bs[-1][5] - bs[0][5]) / (len(bs) - 1) * 1000 for bs in inside if len(bs) > 1]
    row = {
        "subscribers": k,
        "window_s": round(span, 2),
        "load_average": load,
        "steps": steps,
        "steps_per_s": round(steps / span, 2),
        "quotes_per_batch_median": _median([b[2] for batches in inside for b in batches]),
        "redis_cpu_proc_s": round(after["proc_cpu_s"] - before["proc_cpu_s"], 3),
        "redis_cpu_info_s": round(after["info_cpu_s"] - before["info_cpu_s"], 4),
        "redis_cpu_share": round((after["info_cpu_s"] - before["info_cpu_s"]) / span, 4),
        "redis_out_bytes_per_s": round((after["net_out"] - before["net_out"]) / span),
        "redis_in_bytes_per_s": round((after["net_in"] - before["net_in"]) / span),
        "redis_commands_per_s": round((after["commands"] - before["commands"]) / span, 1),
        "batch_bytes": latency_summary(sizes, (50, 99, 100)),
        "batches_received": len(sizes),
        "lag_ms": latency_summary(lags, (50, 99, 100)),
        "follower_cpu_ms_per_batch": _median(follower_cpu),
        "group_send_ms": latency_summary(sends, (50, 99, 100)),
        "group_sends": len(sends),
        "commands_per_s": {
            name: {
                "calls": round((calls - before["commandstats"].get(name, (0, 0))[0]) / span, 1),
                "usec_per_s": round((usec - before["commandstats"].get(name, (0, 0))[1]) / span),
            }
            for name, (calls, usec) in after["commandstats"].items()
            if calls != before["commandstats"].get(name, (0, 0))[0]
        },
    }
    return row


def _median(values):
    values = sorted(values)
    return round(values[len(values) // 2], 3) if values else None


async def capture_batch(url: str, prefix: str) -> dict:
    """One real batch of the running market, as the followers receive it (joined briefly, then left)."""
    layer = layer_for(url, prefix)
    channel = await layer.new_channel()
    await layer.group_add(QUOTES_GROUP, channel)
    try:
        while True:
            message = await asyncio.wait_for(layer.receive(channel), 30)
            if message.get("type") == BATCH_EVENT and message.get("quotes"):
                return message
    finally:
        await layer.group_discard(QUOTES_GROUP, channel)


async def time_group_sends(url: str, prefix: str, message: dict, count: int) -> list[float]:
    """Milliseconds per ``group_send`` of ``message`` (as a probe the followers skip) to the quotes group."""
    layer = layer_for(url, prefix)
    probe = {**message, "type": PROBE_EVENT}
    times, cpu = [], []
    for _ in range(count):
        await asyncio.sleep(0.11)  # between the market's steps' sends, mostly
        started, started_cpu = time.perf_counter(), time.process_time()
        await layer.group_send(QUOTES_GROUP, probe)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return times, cpu


def serialize_ms(message: dict, repeat: int = 7) -> dict:
    """CPU ms to serialize one copy of ``message`` as channels_redis does (msgpack, random prefix), and its bytes."""
    layer = layer_for("redis://127.0.0.1:1/0", "x")
    copy = {**message, "__asgi_channel__": ["specific.x!y"]}
    times = []
    for _ in range(repeat):
        started = time.process_time()
        packed = layer.serialize(copy)
        times.append((time.process_time() - started) * 1000)
    return {"cpu_ms_median": round(sorted(times)[repeat // 2], 2), "bytes": len(packed)}


def fit(rows: list[dict], key: str) -> dict:
    """Least squares ``key = a + b * subscribers`` over the rows."""
    xs = [r["subscribers"] for r in rows]
    ys = [r[key] for r in rows]
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    a = my - b * mx
    residual = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    total = sum((y - my) ** 2 for y in ys)
    return {"a": a, "b": b, "r2": 1 - residual / total if total else 1.0, "points": n}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity")
    parser.add_argument("what", choices=["follow"])
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("ready", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(asyncio.run(_follow(args.url, args.prefix, args.ready))))


if __name__ == "__main__":
    main(sys.argv[1:])
