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
"""

from __future__ import annotations

import bisect
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ticker.launcher import choose_redis, free_port

from .loadgen import Target, Workers
from .transports import percentile, process_cpu_s

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass(frozen=True)
class Server:
    """One server under test: how to start it and how its clients talk to it."""

    name: str
    command: tuple[str, ...]  # "{port}" is replaced
    path: str
    dialect: str
    label: str
    django: bool = False  # the site itself: wait for its HTTP API, not just the port


UVICORN = (PY, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning", "--no-access-log")
DAPHNE = (PY, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}")

SERVERS = {
    s.name: s
    for s in (
        Server(
            "ticker", (*DAPHNE, "config.asgi:application"), "/ws/quotes/", "ticker", "ticker (Channels, daphne)", True
        ),
        Server(
            "ticker-uvicorn", (*UVICORN, "config.asgi:application"), "/ws/quotes/", "ticker", "ticker on uvicorn", True
        ),
        Server("daphne-floor", (*DAPHNE, "bench.refs:floor_app"), "/", "plain", "bare ASGI on daphne"),
        Server("uvicorn-floor", (*UVICORN, "bench.refs:floor_app"), "/", "plain", "bare ASGI on uvicorn"),
        Server(
            "websockets",
            (PY, "-m", "bench.refs", "websockets", "--port", "{port}"),
            "/",
            "plain",
            "bare websockets",
        ),
        Server(
            "socketio",
            (*UVICORN, "bench.refs:socketio_app"),
            "/socket.io/?EIO=4&transport=websocket",
            "socketio",
            "python-socketio on uvicorn",
        ),
    )
}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _pin(cpu: int | None):
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


class Rig:
    """A throwaway feed: fresh SQLite, Redis, the site's run_market; servers started on demand."""

    def __init__(self, *, interval_ms: int):
        self.tmp = tempfile.TemporaryDirectory(prefix="ticker-fanout-")
        self.redis = choose_redis(dict(os.environ))
        if self.redis.url is None:
            raise RuntimeError("bench_fanout needs Redis: install redis-server or set REDIS_URL.")
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.tmp.name}/bench.sqlite3",
            "REDIS_URL": self.redis.url,
            "TICKER_CHANNEL_LAYER": "redis",
            "TICKER_CHANNEL_PREFIX": f"fanout{os.getpid()}",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or "bench-only-key",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_STATIC_ROOT": f"{self.tmp.name}/static",
        }
        self.output = open(Path(self.tmp.name) / "servers.log", "ab")  # noqa: SIM115 (closed in close)
        manage = (PY, str(BASE_DIR / "manage.py"))
        self.market = None
        try:
            subprocess.run((*manage, "migrate", "-v0"), env=self.env, check=True, cwd=BASE_DIR)
        except subprocess.CalledProcessError:
            self.close()
            raise RuntimeError("migrate failed for the benchmark's SQLite database (output above)") from None
        self.market = self.spawn((*manage, "run_market", "--interval", str(interval_ms)))
        with sqlite3.connect(f"{self.tmp.name}/bench.sqlite3") as db:
            self.symbols = db.execute("SELECT count(*) FROM ticker_stock WHERE active").fetchone()[0]

    def spawn(self, command, cpu: int | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            command, env=self.env, cwd=BASE_DIR, stdout=self.output, stderr=subprocess.STDOUT, preexec_fn=_pin(cpu)
        )

    def start(self, server: Server, cpu: int | None) -> tuple[subprocess.Popen, int]:
        port = free_port()
        process = self.spawn([part.replace("{port}", str(port)) for part in server.command], cpu)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {process.returncode}:\n{self.output_tail()}")
            try:
                if server.django:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/quotes/", timeout=1)
                else:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return process, port
            except OSError:
                time.sleep(0.2)
        stop(process)
        raise RuntimeError(f"{server.name} did not start listening within 60 s:\n{self.output_tail()}")

    def output_tail(self, lines: int = 20) -> str:
        """The servers' last lines of output (the log itself goes with the temporary directory)."""
        self.output.flush()
        return "\n".join(Path(self.output.name).read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        for process in (self.market, self.redis.process):
            if process is not None:
                stop(process)
        self.output.close()
        self.tmp.cleanup()


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


def measure(workers: Workers, pids: list[int], seconds: float, *, clients: int, idle_rss_kib: int) -> dict:
    """One measured window over the connected clients: the row of the table."""
    cpu0 = [process_cpu_s(pid) for pid in pids]
    wall0 = time.monotonic()
    figures = workers.window(seconds)
    elapsed = time.monotonic() - wall0
    cpu = sum(process_cpu_s(pid) - c for pid, c in zip(pids, cpu0, strict=True))
    frames = sum(f["frames"] for f in figures)
    latencies = sorted(x for f in figures for x in f["latencies_ms"])
    steps = [s for f in figures for s in f["steps"]]
    generator_cpu = sum(f["cpu_s"] for f in figures)
    rss = sum(rss_kib(pid) for pid in pids)

    def per_frame_us(seconds_of_cpu):
        return round(seconds_of_cpu * 1e6 / frames, 1) if frames else None

    return {
        "clients": clients,
        "frames_per_s": round(frames / elapsed, 1),
        "latency_ms": {p: percentile(latencies, n) for p, n in (("p50", 50), ("p99", 99), ("max", 100))},
        "lost_frames": lost_by_steps(steps),
        "silent_clients": sum(1 for client_steps in steps if not client_steps),
        "lost_updates_sampled": sum(f["sampled_missing"] for f in figures),
        "sampled_updates": sum(f["sampled_updates"] for f in figures),
        "dropped_connections": sum(f["dropped"] for f in figures),
        "server_cpu_us_per_frame": per_frame_us(cpu),
        "server_cpu_share": round(cpu / elapsed, 2),
        "generator_cpu_us_per_frame": per_frame_us(generator_cpu),
        "server_rss_mib": round(rss / 1024, 1),
        "server_kib_per_connection": round((rss - idle_rss_kib) / clients, 1) if clients else None,
    }


def ramp(rig: Rig, server: Server, steps: list[int], *, seconds: float, settle: float, generators: int, log) -> list:
    """Start ``server`` on core 0, add clients step by step (load generator on core 1), measure each step."""
    process, port = rig.start(server, cpu=0)
    workers = Workers(generators, cpu=1)
    rows = []
    try:
        time.sleep(settle)
        idle = rss_kib(process.pid)
        target = Target("127.0.0.1", port, server.path, server.dialect)
        connected = 0
        for count in steps:
            outcome = workers.connect(target, count - connected)
            connected = outcome["connected"]
            if outcome["errors"]:
                log(f"  {len(outcome['errors'])} connects failed, e.g. {outcome['errors'][0]}")
            time.sleep(settle)
            row = measure(workers, [process.pid], seconds, clients=connected, idle_rss_kib=idle)
            rows.append({"server": server.name, "label": server.label, "processes": 1, **row})
            log(summary(rows[-1]))
            if connected < count:
                break  # it refuses more: the next step would measure the same clients
    finally:
        workers.shutdown()
        stop(process)
    return rows


def machine(rig: Rig, clients: int, processes: int, *, seconds: float, settle: float, log) -> dict:
    """The site as a machine would run it: ``processes`` daphne processes over one Redis, no pinning."""
    server = SERVERS["ticker"]
    started = [rig.start(server, cpu=None) for _ in range(processes)]
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
            stop(process)
    row = {"server": "ticker-machine", "label": f"ticker, {processes} daphne processes", "processes": processes, **row}
    log(summary(row))
    return row


def summary(row: dict) -> str:
    lat = row["latency_ms"]
    return (
        f"  {row['server']:>15} {row['clients']:>6} clients: {row['frames_per_s']:>8} frames/s, "
        f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, lost {row['lost_frames']}+{row['lost_updates_sampled']}, "
        f"silent {row['silent_clients']}, "
        f"server {row['server_cpu_us_per_frame']} us/frame, generator {row['generator_cpu_us_per_frame']} us/frame, "
        f"{row['server_kib_per_connection']} KiB/conn"
    )


def ratios(rows: list[dict], *, at: int) -> list[str]:
    """The site's server CPU per frame against each reference, at the top step of the ramp."""
    usable = [r for r in rows if r["processes"] == 1 and r["clients"] <= at and r["server_cpu_us_per_frame"]]
    top = {row["server"]: row for row in sorted(usable, key=lambda r: r["clients"])}  # the largest step wins
    ours = top.get("ticker")
    if ours is None:
        return []
    targets = {"daphne-floor": " (issue 5: at most 1.5x)", "socketio": " (issue 5: below 1x)"}
    return [
        f"ticker / {row['label']} at {ours['clients']} vs {row['clients']} clients: "
        f"{ours['server_cpu_us_per_frame'] / row['server_cpu_us_per_frame']:.2f}x "
        f"({ours['server_cpu_us_per_frame']} vs {row['server_cpu_us_per_frame']} us/frame){targets.get(name, '')}"
        for name, row in top.items()
        if name != "ticker"
    ]
