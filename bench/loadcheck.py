"""A WebSocket load check: N clients on all symbols, every update accounted for.

Used by ``python manage.py ws_loadcheck``. Each client checks every frame
(seq +1 per symbol, one frame per step) and samples end-to-end latency from
each quote's ``ts``. Run it on the same machine as the server: ``ts`` and the
client clock must agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import time
from dataclasses import dataclass, field

from .transports import percentile


@dataclass
class ClientStats:
    updates: int = 0
    frames: int = 0
    gaps: int = 0
    duplicate_steps: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    connected: bool = False
    error: str = ""
    # Set once the client is subscribed, or has failed.
    settled: asyncio.Event = field(default_factory=asyncio.Event)


async def _client(
    url: str, origin: str, stats: ClientStats, go: asyncio.Event, stop: asyncio.Event, sample_every: int
) -> None:
    import websockets

    try:
        async with websockets.connect(url, origin=origin, max_size=2**22, open_timeout=60) as ws:
            await ws.send('{"action":"subscribe","symbols":["*"]}')
            # Heartbeats may come first (they go to every connection).
            while (snapshot := json.loads(await ws.recv()))["type"] != "snapshot":
                pass
            seq = {q["symbol"]: q["seq"] for q in snapshot["quotes"]}
            last_step = snapshot["step"]
            stats.connected = True
            stats.settled.set()
            # Read (and check seq) from the start, so frames sent while the
            # other clients connect do not pile up; count only after ``go``.
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                now = time.time() * 1000
                frame = json.loads(raw)
                if frame.get("type") != "quotes":
                    continue
                if not go.is_set():
                    for quote in frame["quotes"]:
                        seq[quote["symbol"]] = quote["seq"]
                    last_step = frame["step"]
                    continue
                stats.frames += 1
                if frame["step"] <= last_step:
                    stats.duplicate_steps += 1
                last_step = frame["step"]
                for i, quote in enumerate(frame["quotes"]):
                    symbol = quote["symbol"]
                    if symbol in seq and quote["seq"] != seq[symbol] + 1:
                        stats.gaps += quote["seq"] - seq[symbol] - 1 if quote["seq"] > seq[symbol] else 1
                    seq[symbol] = quote["seq"]
                    stats.updates += 1
                    if i == 0 and stats.frames % sample_every == 0:
                        stats.latencies_ms.append(now - quote["ts"])
    except Exception as exc:  # report, do not crash the whole check
        stats.error = f"{type(exc).__name__}: {exc}"
        stats.settled.set()


async def run_check(*, url: str, clients: int, duration: float, connect_rate: int = 200, sample_every: int = 1) -> dict:
    """Connect ``clients`` sockets, count every update for ``duration`` seconds, return the figures."""
    origin = url.replace("ws://", "http://").replace("wss://", "https://").split("/ws/")[0]
    stats = [ClientStats() for _ in range(clients)]
    go, stop = asyncio.Event(), asyncio.Event()
    tasks = []
    started = time.monotonic()
    for i, s in enumerate(stats):
        tasks.append(asyncio.create_task(_client(url, origin, s, go, stop, sample_every)))
        if (i + 1) % connect_rate == 0:
            await asyncio.sleep(0.2)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(s.settled.wait() for s in stats)), 120)
    connect_s = time.monotonic() - started
    await asyncio.sleep(2)  # let the connect burst settle before counting
    cpu0 = time.process_time()
    go.set()
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.gather(*tasks)
    client_cpu = time.process_time() - cpu0
    latencies = sorted(ms for s in stats for ms in s.latencies_ms)
    frames = sum(s.frames for s in stats)
    return {
        "clients": clients,
        "connected": sum(s.connected for s in stats),
        "errors": sorted({s.error for s in stats if s.error})[:5],
        "duration_s": duration,
        "connect_s": round(connect_s, 2),
        "frames": frames,
        "updates": sum(s.updates for s in stats),
        "lost_updates": sum(s.gaps for s in stats),
        "out_of_order_frames": sum(s.duplicate_steps for s in stats),
        "frames_per_client_per_s": round(frames / clients / duration, 2) if clients else 0,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": _round(max(latencies, default=None)),
            "mean": _round(statistics.fmean(latencies) if latencies else None),
        },
        "load_generator_cpu_us_per_frame": round(client_cpu / frames * 1e6, 1) if frames else None,
        "load_generator_pid": os.getpid(),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(needed, soft), hard), hard))
