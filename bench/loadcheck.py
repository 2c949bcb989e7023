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
import statistics
import time
from dataclasses import dataclass, field

from .seq import SeqFollower
from .stats import latency_summary


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
            follower = SeqFollower()
            follower.take(snapshot)
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
                change = follower.take(frame)
                if not go.is_set():
                    continue
                stats.frames += 1
                stats.duplicate_steps += change.step_back
                stats.gaps += change.missing + change.stale
                stats.updates += len(frame["quotes"])
                if frame["quotes"] and stats.frames % sample_every == 0:
                    stats.latencies_ms.append(now - frame["quotes"][0]["ts"])
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
    latencies = [ms for s in stats for ms in s.latencies_ms]
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
            **latency_summary(latencies, (50, 95, 99, 100)),
            "mean": round(statistics.fmean(latencies), 1) if latencies else None,
        },
        "load_generator_cpu_us_per_frame": round(client_cpu / frames * 1e6, 1) if frames else None,
        "load_generator_pid": os.getpid(),
    }
