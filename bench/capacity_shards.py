"""What channels_redis's sharding does to one group (docs/scaling.md, "Sharding the channel layer").

Two private ``redis-server``s as one layer's ``hosts``; K web-process-like layer instances (each its own
``RedisChannelLayer``, so each has its own channel key, as separate processes would) join ``quotes``; a
publisher layer ``group_send``s a batch-sized message N times while the K receive. Per server: bytes in and out,
CPU (INFO ``used_cpu_*``), and which server holds the group's membership. channels_redis 4.3 keeps the group's
member set on the server its name hashes to, but puts each member's copy of a message on the server that
member's channel hashes to: so the copies (the bytes and most of the CPU) spread over the shards by channel,
while the publisher still serializes one copy per member.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from bench.capacity import QUOTES_GROUP, RedisProbe
from ticker.runtime.launcher import start_redis_server


def batch_like(quotes: int) -> dict:
    """A quote.batch of ``quotes`` quotes about the size of the real ones (~160 bytes each as msgpack)."""
    quote = {
        "symbol": "S0000", "name": "Simulated Co. 0000", "price": "123.45", "change": "-1.23", "change_pct": "-0.99",
        "open": "124.00", "high": "125.10", "low": "122.80", "volume": 123456, "seq": 1, "ts": 0, "halted": False,
        "candle": {"time": 0, "open": "123.40", "high": "123.50", "low": "123.30", "close": "123.45", "volume": 12},
    }  # fmt: skip
    return {"type": "quote.batch", "step": 1, "quotes": [dict(quote, symbol=f"S{i:04d}") for i in range(quotes)]}


async def _run(urls: list[str], k: int, sends: int, message: dict) -> dict:
    from channels_redis.core import RedisChannelLayer

    def layer():
        return RedisChannelLayer(hosts=urls, prefix="shards", capacity=100, group_expiry=300, expiry=60)

    members = [layer() for _ in range(k)]
    channels = [await m.new_channel() for m in members]
    for m, c in zip(members, channels, strict=True):
        await m.group_add(QUOTES_GROUP, c)
    probes = [RedisProbe(url) for url in urls]
    before = [p.read() for p in probes]
    received, everything = [0] * k, asyncio.Event()

    async def drain(i: int) -> None:
        while True:
            await members[i].receive(channels[i])
            received[i] += 1
            if sum(received) >= k * sends:
                everything.set()

    drains = [asyncio.create_task(drain(i)) for i in range(k)]
    publisher = layer()
    started = time.perf_counter()
    for _ in range(sends):
        await publisher.group_send(QUOTES_GROUP, message)
        await asyncio.sleep(0.05)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(everything.wait(), 30)
    elapsed = time.perf_counter() - started
    after = [p.read() for p in probes]
    for task in drains:
        task.cancel()
    group_home = publisher.consistent_hash(QUOTES_GROUP)
    homes = [publisher.consistent_hash(m.non_local_name(c)) for m, c in zip(members, channels, strict=True)]
    return {
        "servers": len(urls),
        "subscribers": k,
        "sends": sends,
        "received": sum(received),
        "seconds": round(elapsed, 2),
        "group_membership_on_server": group_home,
        "channels_per_server": [homes.count(i) for i in range(len(urls))],
        "per_server": [
            {
                "out_bytes_per_send": round((a["net_out"] - b["net_out"]) / sends),
                "in_bytes_per_send": round((a["net_in"] - b["net_in"]) / sends),
                "cpu_ms_per_send": round((a["info_cpu_s"] - b["info_cpu_s"]) * 1000 / sends, 2),
            }
            for a, b in zip(after, before, strict=True)
        ],
    }


def shard_split(*, servers: int = 2, k: int = 8, sends: int = 20, quotes: int = 3650) -> list[dict]:
    """The same K and sends on one server, then on ``servers`` shards."""
    message = batch_like(quotes)
    rows = []
    for n in (1, servers):
        started = [start_redis_server() for _ in range(n)]
        try:
            if not all(started):
                raise RuntimeError("the shard check needs redis-server installed")
            rows.append(asyncio.run(_run([s.url for s in started], k, sends, message)))
        finally:
            for s in started:
                if s:
                    s.close()
    return rows
