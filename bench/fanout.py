"""Fan-out benchmark: how many live clients one server process carries, and at what cost per frame.

Used by ``python manage.py bench_fanout``. One market (the site's own
``run_market``, default feed) publishes through the Redis channel layer; each
server under test follows it, and a lean load generator (bench/loadgen.py)
ramps the number of clients on it. Per step it reports latency (market
timestamp to the client socket), lost frames, server CPU per delivered frame
(from /proc), the load generator's own CPU per frame, and server memory per
connection. The servers are the site on daphne and the references of
bench/refs.py, measured on the same feed in the same invocation.

CPU placement: each server process is pinned to core 0 and the load
generator to core 1 (the market and Redis float), as in issue 5's anchors.

Compression (issue 14): the site can be ramped twice per workload, its
clients first not offering permessage-deflate, then offering it (the
``-deflate`` rows); the server is the same command with the same settings.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass

from .loadgen import Target, Workers
from .proc import process_cpu_s, rss_kib
from .rig import DAPHNE, PY, SITE, UVICORN, UVICORN_NEEDS, Rig, Server
from .stats import latency_summary

SERVERS = {
    s.name: s
    for s in (
        SITE,
        Server(
            "ticker-uvicorn",
            (*UVICORN, "config.asgi:application"),
            "/ws/quotes/",
            "ticker",
            "ticker on uvicorn",
            django=True,
            needs=UVICORN_NEEDS,
        ),
        Server("daphne-floor", (*DAPHNE, "bench.refs:floor_app"), "/", "plain", "bare ASGI on daphne"),
        Server(
            "uvicorn-floor",
            (*UVICORN, "bench.refs:floor_app"),
            "/",
            "plain",
            "bare ASGI on uvicorn",
            needs=UVICORN_NEEDS,
        ),
        Server(
            "websockets",
            (PY, "-m", "bench.refs", "websockets", "--port", "{port}"),
            "/",
            "plain",
            "bare websockets",
            needs=("websockets", "uvloop"),
        ),
        Server(
            "socketio",
            (*UVICORN, "bench.refs:socketio_app"),
            "/socket.io/?EIO=4&transport=websocket",
            "socketio",
            "python-socketio on uvicorn",
            needs=(*UVICORN_NEEDS, "socketio"),
        ),
    )
}


@dataclass(frozen=True)
class Workload:
    """What the site's clients subscribe to in one ramp: every client the same symbols, or each its own."""

    name: str  # the rows' "server"
    label: str
    symbols: tuple[str, ...] = ()  # empty: ["*"]
    watchlist: int = 0  # K: each client its own K random symbols of ``symbols``
    deflate: bool = False  # the clients offer permessage-deflate

    @property
    def personal(self) -> bool:
        return self.watchlist > 0


# --compression: which ramps, in this order (the cost of the later ramps drifts with the market's state,
# so "on,off" is there to measure the other order too).
COMPRESSION = {"off": (False,), "on": (True,), "both": (False, True), "off,on": (False, True), "on,off": (True, False)}


def workloads(
    seeded: tuple[str, ...], listed: tuple[str, ...], watchlist: int, compression: str = "off"
) -> list[Workload]:
    """``--universe``/``--watchlist``: the broadcast (every client on the seeded symbols) and personal watchlists;
    each without and/or with permessage-deflate offered (``compression``: off, on or both)."""
    return [
        *deflated(Workload("ticker", f"ticker, every client on the {len(seeded)} seeded symbols", seeded), compression),
        *deflated(
            Workload(
                "ticker-personal",
                f"ticker, each client its own {watchlist} of {len(listed)} symbols",
                listed,
                watchlist,
            ),
            compression,
        ),
    ]


def deflated(workload: Workload, compression: str) -> list[Workload]:
    """``workload`` as ``--compression`` asks: as it is (off), its clients offering permessage-deflate (on,
    the row's server named NAME-deflate), or both, one after the other (both = off,on; or on,off)."""
    return [
        Workload(
            f"{workload.name}-deflate",
            f"{workload.label}, permessage-deflate",
            workload.symbols,
            workload.watchlist,
            True,
        )
        if on
        else workload
        for on in COMPRESSION[compression]
    ]


def lost_by_steps(step_lists: list[list[int]]) -> int:
    """Frames each client missed between two it received: steps that other clients got in that span.

    TCP keeps order and every server sends the steps in order, so a step
    missing between two a client did receive will never come: it is lost.
    Before a client's first frame of the window or after its last, a missing
    step may only be late (the window opened or closed while that step's
    fan-out was under way), so it is not counted here; a batch that reached
    no client at all is caught by the sampled seq check instead, and a client
    that received nothing in the window is counted as silent.
    """
    wanted = sorted({s for steps in step_lists for s in steps})
    lost = 0
    for steps in step_lists:
        if len(steps) < 2:
            continue
        span = wanted[bisect.bisect_right(wanted, steps[0]) : bisect.bisect_left(wanted, steps[-1])]
        got = set(steps)
        lost += sum(1 for s in span if s not in got)
    return lost


def measure(
    workers: Workers, pids: list[int], seconds: float, *, clients: int, idle_rss_kib: int, by_steps: bool = True
) -> dict:
    """One measured window over the connected clients: the row of the table.

    ``by_steps`` False (personal watchlists): a client gets no frame in a step that moved none of its
    symbols, so a missing step is no loss; every client keeps its frames and losses are found by seq.
    """
    cpu0 = [process_cpu_s(pid) for pid in pids]
    wall0 = time.monotonic()
    figures = workers.window(seconds)
    elapsed = time.monotonic() - wall0
    compressed = sum(f["compressed"] for f in figures)
    cpu = sum(process_cpu_s(pid) - c for pid, c in zip(pids, cpu0, strict=True))
    frames = sum(f["frames"] for f in figures)
    steps = [s for f in figures for s in f["steps"]]
    generator_cpu = sum(f["cpu_s"] for f in figures)
    rss = sum(rss_kib(pid) for pid in pids)

    def per_frame_us(seconds_of_cpu):
        return round(seconds_of_cpu * 1e6 / frames, 1) if frames else None

    return {
        "clients": clients,
        "frames_per_s": round(frames / elapsed, 1),
        "latency_ms": latency_summary((x for f in figures for x in f["latencies_ms"]), (50, 99, 100)),
        "lost_frames": lost_by_steps(steps) if by_steps else None,
        "silent_clients": sum(1 for f in figures for n in f["client_frames"] if not n),
        "lost_updates_sampled": sum(f["sampled_missing"] for f in figures),
        "sampled_updates": sum(f["sampled_updates"] for f in figures),
        "dropped_connections": sum(f["dropped"] for f in figures),
        "compressed_frames": compressed,  # with RSV1 set (permessage-deflate)
        "compressed_share": round(compressed / frames, 3) if frames else None,
        "deflated_clients": sum(f["deflated_clients"] for f in figures),
        "latency_samples": sum(len(f["latencies_ms"]) for f in figures),
        "server_cpu_us_per_frame": per_frame_us(cpu),
        "server_cpu_share": round(cpu / elapsed, 2),
        "generator_cpu_us_per_frame": per_frame_us(generator_cpu),
        "server_rss_mib": round(rss / 1024, 1),
        "server_kib_per_connection": round((rss - idle_rss_kib) / clients, 1) if clients else None,
    }


def ramp(
    rig: Rig,
    server: Server,
    steps: list[int],
    *,
    seconds: float,
    settle: float,
    generators: int,
    log,
    workload: Workload | None = None,
) -> list:
    """Start ``server`` on core 0, add clients step by step (load generator on core 1), measure each step."""
    process, port = rig.start(server, cpu=0)
    name, label = (workload.name, workload.label) if workload else (server.name, server.label)
    symbols, watchlist, deflate = (
        (workload.symbols, workload.watchlist, workload.deflate) if workload else ((), 0, False)
    )
    personal = bool(workload and workload.personal)
    workers = Workers(generators, cpu=1)
    rows = []
    try:
        time.sleep(settle)
        idle = rss_kib(process.pid)
        target = Target("127.0.0.1", port, server.path, server.dialect, symbols, watchlist, deflate)
        connected = 0
        for count in steps:
            # Personal watchlists: every client keeps its frames for the seq check (decoded after the window).
            outcome = workers.connect(target, count - connected, sample_every=1 if personal else 20)
            connected = outcome["connected"]
            if outcome["errors"]:
                log(f"  {len(outcome['errors'])} connects failed, e.g. {outcome['errors'][0]}")
            time.sleep(settle)
            row = measure(workers, [process.pid], seconds, clients=connected, idle_rss_kib=idle, by_steps=not personal)
            rows.append({"server": name, "label": label, "processes": 1, **row})
            log(summary(rows[-1]))
            if connected < count:
                break  # it refuses more: the next step would measure the same clients
    finally:
        workers.shutdown()
        rig.stop(process)
    return rows


def machine(rig: Rig, clients: int, processes: int, *, seconds: float, settle: float, log) -> dict:
    """The site as a machine would run it: ``processes`` daphne processes over one Redis, no pinning."""
    server = SITE
    started = [rig.start(server) for _ in range(processes)]
    workers = Workers(processes)
    try:
        time.sleep(settle)
        idle = sum(rss_kib(p.pid) for p, _ in started)
        connected = 0
        for i, (_, port) in enumerate(started):
            share = clients // processes + (i < clients % processes)
            outcome = workers.connect(Target("127.0.0.1", port, server.path, server.dialect), share)
            connected = outcome["connected"]
        time.sleep(settle)
        row = measure(workers, [p.pid for p, _ in started], seconds, clients=connected, idle_rss_kib=idle)
    finally:
        workers.shutdown()
        for process, _ in started:
            rig.stop(process)
    row = {"server": "ticker-machine", "label": f"ticker, {processes} daphne processes", "processes": processes, **row}
    log(summary(row))
    return row


def summary(row: dict) -> str:
    lat = row["latency_ms"]
    return (
        f"  {row['server']:>15} {row['clients']:>6} clients: {row['frames_per_s']:>8} frames/s, "
        f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, lost {_or_na(row['lost_frames'])}+{row['lost_updates_sampled']}, "
        f"silent {row['silent_clients']}, "
        f"server {row['server_cpu_us_per_frame']} us/frame, generator {row['generator_cpu_us_per_frame']} us/frame, "
        f"{row['server_kib_per_connection']} KiB/conn"
    )


def _or_na(value) -> str:
    return "n/a" if value is None else str(value)


def ratios(rows: list[dict], *, at: int) -> list[str]:
    """The site's server CPU per frame against each reference, at the top step of the ramp."""
    usable = [r for r in rows if r["processes"] == 1 and r["clients"] <= at and r["server_cpu_us_per_frame"]]
    top = {row["server"]: row for row in sorted(usable, key=lambda r: r["clients"])}  # the largest step wins
    ours = top.get("ticker")
    targets = {"daphne-floor": " (issue 5: at most 1.5x)", "socketio": " (issue 5: below 1x)"}
    site = ("ticker", "ticker-personal", "ticker-deflate", "ticker-personal-deflate")
    compression = [
        f"compression on / off ({on['label']} / {off['label']}) at {on['clients']} vs {off['clients']} clients: "
        f"{on['server_cpu_us_per_frame'] / off['server_cpu_us_per_frame']:.2f}x "
        f"({on['server_cpu_us_per_frame']} vs {off['server_cpu_us_per_frame']} us/frame) (issue 14: at most 1.2x)"
        for off, on in ((top.get(name), top.get(f"{name}-deflate")) for name in ("ticker", "ticker-personal"))
        if off and on and off["server_cpu_us_per_frame"]
    ]
    if ours is None:
        return compression
    mine = top.get("ticker-personal")
    personal = (
        [
            f"personal watchlists / broadcast ({mine['label']} / {ours['label']}) at {mine['clients']} vs "
            f"{ours['clients']} clients: {mine['server_cpu_us_per_frame'] / ours['server_cpu_us_per_frame']:.2f}x "
            f"({mine['server_cpu_us_per_frame']} vs {ours['server_cpu_us_per_frame']} us/frame) "
            "(issue 11: at most 1.5x)"
        ]
        if mine and mine["server_cpu_us_per_frame"]
        else []
    )
    return (
        compression
        + personal
        + [
            f"ticker / {row['label']} at {ours['clients']} vs {row['clients']} clients: "
            f"{ours['server_cpu_us_per_frame'] / row['server_cpu_us_per_frame']:.2f}x "
            f"({ours['server_cpu_us_per_frame']} vs {row['server_cpu_us_per_frame']} us/frame){targets.get(name, '')}"
            for name, row in top.items()
            if name not in site
        ]
    )
