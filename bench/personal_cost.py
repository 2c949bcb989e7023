"""Group per user vs one routed message (issue 23): what a step's N alert fires cost the PUBLISHER, and how long
they take to reach a web process, on the real Redis channel layer.

Used by ``python manage.py bench_alerts`` (its first part). Two ways to send N fires to N users:

- ``per-user``: one ``group_send`` per fire, to the group ``user.<id>``; each web process would have added its
  user connections' channels to those groups. Here one web process holds all N users, its one channel in all N
  groups (joined before measuring).
- ``routed`` (ours, ticker/wire/personal.py): one ``group_send`` to ``personal`` carrying the N events; each web
  process routes them by user (ticker/hub/personal.py ``PersonalRouter``).

The web process is a separate process (``_receiver_main``): it receives on its one channel and hands every
message to a real ``PersonalRouter`` holding one outlet per user; an outlet notes when it was written to. A
fire's delivery latency is that moment minus the step's ``ts`` (taken before the step's first send, as the
market would take it before publishing). The publisher's Redis round trips are counted on redis-py's
connection (one ``send_packed_command`` per request or pipeline). Steps alternate per-user and routed, after
one step of each that is not counted (the publisher's first connections, the receiver's first use).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import statistics
import time

from .stats import latency_summary

USER_GROUP = "user.{}"


def layer_for(url: str, prefix: str):
    """A channels_redis layer configured as the site's (config/settings.py)."""
    from channels_redis.core import RedisChannelLayer

    return RedisChannelLayer(hosts=[{"address": url}], prefix=prefix, capacity=100, group_expiry=300, expiry=60)


def alert(user: int, step: int, ts_ms: int) -> dict:
    """An alert as ``alert_json`` shapes it (ticker/market/alerts.py), its id the user's, plus ``ts`` (ms)."""
    return {
        "id": user,
        "symbol": "ACME",
        "condition": "price_above",
        "value": "100.00",
        "note": "",
        "state": "triggered",
        "created_at": "2026-12-07T08:00:00+00:00",
        "triggered_at": "2026-12-07T08:00:01+00:00",
        "price": 100.25,
        "change_pct": 0.25,
        "step": step,
        "read": False,
        "ts": ts_ms,
    }


class _Stamp:
    """A PersonalRouter outlet that notes when it was written to (the web process's socket write)."""

    backlogged = False
    deflate = False

    def __init__(self, writes: list[float]):
        self.writes = writes
        self.count = 0

    def write(self, frame) -> None:
        self.writes.append(time.time() * 1000)
        self.count += 1


def _receiver_main(pipe, url: str, prefix: str, users: int) -> None:
    """The web process: one channel in ``personal`` (routed), and one channel per user connection, each in its
    ``user.<id>`` group (per-user); whatever arrives goes through a real PersonalRouter."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from ticker.hub.personal import PersonalRouter
    from ticker.wire.personal import PERSONAL_GROUP, decoded

    async def main() -> None:
        layer = layer_for(url, prefix)
        personal = await layer.new_channel()
        await layer.group_add(PERSONAL_GROUP, personal)
        channels = [await layer.new_channel() for _ in range(users)]
        for user, channel in enumerate(channels):
            await layer.group_add(USER_GROUP.format(user), channel)
        router, writes, stamps = PersonalRouter(), [], []
        outlets = {user: _Stamp(writes) for user in range(users)}
        for user, outlet in outlets.items():
            router.attach(outlet, user)
        errors = [0]

        async def follow(channel: str) -> None:
            while True:
                try:
                    message = await layer.receive(channel)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    errors[0] += 1
                    continue
                stamps.extend(decoded(event)[1]["alert"]["ts"] for event in message.get("events", ()))
                router.route(message)

        tasks = [asyncio.ensure_future(follow(channel)) for channel in (personal, *channels)]
        loop = asyncio.get_running_loop()
        asked: asyncio.Queue = asyncio.Queue()
        loop.add_reader(pipe.fileno(), lambda: asked.put_nowait(pipe.recv()))
        pipe.send(("ready", None))
        while (command := await asked.get()) != "exit":
            # Every fire, or no new one for 2 s (the rest were dropped: a channel over its capacity).
            last, quiet_since = -1, loop.time()
            while len(writes) < command and loop.time() - quiet_since < 2:
                if len(writes) != last:
                    last, quiet_since = len(writes), loop.time()
                await asyncio.sleep(0.005)
            latencies = [at - ts for at, ts in zip(writes, stamps, strict=False)]
            pipe.send(("ok", {"latencies_ms": latencies, "per_user": _counts(outlets), "errors": errors[0]}))
            writes.clear()
            stamps.clear()
            for outlet in outlets.values():
                outlet.count = 0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await layer.flush()

    asyncio.run(main())


def _counts(outlets: dict) -> dict[int, int]:
    """How many users got how many frames: {frames: users}."""
    counts: dict[int, int] = {}
    for outlet in outlets.values():
        counts[outlet.count] = counts.get(outlet.count, 0) + 1
    return counts


@contextlib.contextmanager
def round_trips():
    """Counts requests (a command or a whole pipeline) this process sends to Redis: ``counter[0]``."""
    from redis.asyncio.connection import AbstractConnection

    original = AbstractConnection.send_packed_command
    counter = [0]

    async def counted(self, command, check_health=True):
        counter[0] += 1
        return await original(self, command, check_health)

    AbstractConnection.send_packed_command = counted
    try:
        yield counter
    finally:
        AbstractConnection.send_packed_command = original


async def _publish(layer, way: str, users: int, step: int) -> int:
    """One step's N fires, ``way`` per-user or routed; returns the step's ts."""
    from ticker.wire.personal import PERSONAL_GROUP, alert_frame, message

    ts = time.time_ns() // 1_000_000
    if way == "per-user":
        for user in range(users):
            await layer.group_send(USER_GROUP.format(user), message([(user, alert_frame(alert(user, step, ts)))]))
    else:
        await layer.group_send(PERSONAL_GROUP, message([(u, alert_frame(alert(u, step, ts))) for u in range(users)]))
    return ts


def compare(url: str, prefix: str, counts: list[int], *, steps: int, interval_s: float, log) -> list[dict]:
    """For each N of ``counts``: ``steps`` steps of each way, alternating; one row per (N, way)."""
    rows = []
    for users in counts:
        mine, theirs = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=_receiver_main, args=(theirs, url, f"{prefix}n{users}", users), daemon=True
        )
        process.start()
        try:
            deadline = time.monotonic() + 120
            while not mine.poll(0.2):
                if not process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the receiving web process did not start (exit {process.exitcode})")
            mine.recv()
            rows += asyncio.run(_steps(mine, url, f"{prefix}n{users}", users, steps, interval_s))
        finally:
            with contextlib.suppress(OSError):
                mine.send("exit")
            process.join(10)
            if process.is_alive():
                process.kill()
        for row in rows[-2:]:
            log(summary(row))
    return rows


async def _steps(pipe, url: str, prefix: str, users: int, steps: int, interval_s: float) -> list[dict]:
    layer = layer_for(url, prefix)
    ways = ("per-user", "routed")
    figures = {way: {"wall_ms": [], "trips": [], "latencies": [], "bad": 0, "lost": 0, "p99": []} for way in ways}
    step = 0
    with round_trips() as trips:
        for warm in (True, *([False] * steps)):  # a first step of each way, not counted: connections, first use
            for way in ways:
                step += 1
                before, t0 = trips[0], time.perf_counter()
                await _publish(layer, way, users, step)
                wall = (time.perf_counter() - t0) * 1000
                took = trips[0] - before
                pipe.send(users)
                _, got = await asyncio.to_thread(pipe.recv)
                await asyncio.sleep(interval_s)
                if warm:
                    continue
                mine = figures[way]
                mine["p99"].append(latency_summary(got["latencies_ms"], (99,))["p99"])
                mine["wall_ms"].append(wall)
                mine["trips"].append(took)
                mine["latencies"] += got["latencies_ms"]
                mine["bad"] += 0 if got["per_user"] == {1: users} else 1  # each user its fire, once
                mine["lost"] += got["per_user"].get(0, 0)
    await layer.flush()
    return [
        {
            "users": users,
            "way": way,
            "steps": steps,
            "publisher_wall_ms": round(statistics.median(f["wall_ms"]), 2),
            "publisher_wall_ms_each": [round(x, 2) for x in f["wall_ms"]],
            "round_trips_per_step": statistics.median(f["trips"]),
            "latency_ms": latency_summary(f["latencies"], (50, 99, 100)),
            "latency_p99_each": f["p99"],
            "fires": len(f["latencies"]),
            "steps_not_exactly_once": f["bad"],
            "fires_lost": f["lost"],
        }
        for way, f in figures.items()
    ]


def summary(row: dict) -> str:
    lat = row["latency_ms"]
    return (
        f"  {row['users']:>6} fires {row['way']:>8}: publisher {row['publisher_wall_ms']} ms/step, "
        f"{row['round_trips_per_step']} Redis round trips, delivery p50 {lat['p50']} p99 {lat['p99']} "
        f"max {lat['max']} ms, fires lost {row['fires_lost']}, steps not exactly once {row['steps_not_exactly_once']}"
    )


def ratios(rows: list[dict]) -> list[str]:
    """Per N: per-user / routed, publisher wall time and delivery p99."""
    lines = []
    by = {(r["users"], r["way"]): r for r in rows}
    for users in sorted({r["users"] for r in rows}):
        a, b = by.get((users, "per-user")), by.get((users, "routed"))
        if not (a and b and b["publisher_wall_ms"] and b["latency_ms"]["p99"]):
            continue
        lines.append(
            f"{users} fires: group per user / one routed message: publisher "
            f"{a['publisher_wall_ms'] / b['publisher_wall_ms']:.1f}x ({a['publisher_wall_ms']} vs "
            f"{b['publisher_wall_ms']} ms a step, {a['round_trips_per_step']} vs {b['round_trips_per_step']} round "
            f"trips), delivery p99 {a['latency_ms']['p99'] / b['latency_ms']['p99']:.1f}x "
            f"({a['latency_ms']['p99']} vs {b['latency_ms']['p99']} ms)"
        )
    return lines
