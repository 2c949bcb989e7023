"""Where a WebSocket connection's memory goes on the site's daphne process (issue 24, item 3): ``bench_connmem``.

Two servers on one rig's feed, one after the other, each given the same clients (subscribed to every symbol,
streaming): first a plain daphne for the RSS growth per connection (what ``bench_fanout`` reports), then one
under tracemalloc (``bench/memserve.py``) for where the Python heap's growth was allocated, by site (the
innermost frame, and the first frame in the site's own code) and by type (garbage-collected objects, shallow
sizes). Each server is probed idle, then with the clients; the difference divided by the clients is the cost
per connection.
"""

from __future__ import annotations

import pickle
import shutil
import signal
import time
import urllib.request
from pathlib import Path

from .loadgen import Target, Workers
from .proc import rss_kib
from .rig import BASE_DIR, PY, SITE, Rig, Server

OWN = (str(BASE_DIR / "ticker"), str(BASE_DIR / "config"))
# A probe collects, snapshots a million blocks with 12 frames each and walks every object, on a server busy with
# 2,000 clients under tracemalloc: 120 s was once too short. Generous: a benchmark, not a test.
PROBE_TIMEOUT_S = 600


def traced(frames: int) -> Server:
    command = (PY, "-X", f"tracemalloc={frames}", "-m", "bench.memserve", *SITE.command[3:])
    return Server("ticker-traced", command, SITE.path, SITE.dialect, "ticker under tracemalloc", True)


def probe(process, where: Path) -> dict:
    """Ask the server for a probe (SIGUSR1) and read it."""
    before = set(where.glob("*.done"))
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while not (done := set(where.glob("*.done")) - before):
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the server wrote no memory probe")
        time.sleep(0.2)
    with open(done.pop().with_suffix(".pickle"), "rb") as probe_file:
        return pickle.load(probe_file)


def ready(port: int) -> None:
    """Wait until the server says it is ready (/readyz: its hub follows the feed): a server slowed by tracemalloc
    refused clients that came sooner (1013, "try again later")."""
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def warm(workers: Workers, target: Target, settle: float) -> None:
    """One client first, kept open, before the idle measurement: what the first connection imports and caches
    (modules loaded on first use, the hub's first snapshot) is the process's, not a cost per connection."""
    if workers.connect(target, 1)["connected"] != 1:
        raise RuntimeError("the warm-up client could not connect")
    time.sleep(settle)


def run(
    rig: Rig, *, clients: int, frames: int, settle: float, out: Path, log, symbol: str = "AAPL", keep: bool = False
) -> dict:
    """Both servers measured; the probes (tracemalloc snapshots, tens of MB) deleted after, unless ``keep``."""
    # Each client subscribed to one symbol: a frame a step or so, so the server under tracemalloc keeps up (on
    # every symbol it fell behind and closed most clients as backlogged) and what is measured is a connection at
    # rest between frames.
    target_of = lambda port: Target("127.0.0.1", port, SITE.path, SITE.dialect, symbols=(symbol,))  # noqa: E731
    result: dict = {"clients": clients, "symbol": symbol}
    # 1. RSS growth on the server as it runs.
    process, port = rig.start(SITE)
    workers = Workers(1)
    try:
        ready(port)
        warm(workers, target_of(port), settle)
        idle = rss_kib(process.pid)
        connected = workers.connect(target_of(port), clients)["connected"]
        time.sleep(settle)
        connected -= 1  # the warm-up client's
        result["rss_kib_per_connection"] = round((rss_kib(process.pid) - idle) / max(connected, 1), 1)
        result["connected_plain"] = connected
    finally:
        workers.shutdown()
        rig.stop(process)
    log(f"plain daphne: {connected} clients, {result['rss_kib_per_connection']} KiB RSS per connection")
    # 2. The same under tracemalloc, probed idle and loaded.
    where = out / "probes"
    where.mkdir(parents=True, exist_ok=True)
    rig.env["TICKER_MEMPROBE_DIR"] = str(where)
    process, port = rig.start(traced(frames))
    workers = Workers(1)
    try:
        ready(port)
        warm(workers, target_of(port), settle)
        idle = probe(process, where)
        connected = workers.connect(target_of(port), clients)["connected"]
        time.sleep(settle)
        loaded = probe(process, where)
        connected -= 1  # the warm-up client's
    finally:
        workers.shutdown()
        rig.stop(process)
    result.update(breakdown(idle, loaded, max(connected, 1)))
    if not keep:
        shutil.rmtree(where)
    result["connected_traced"] = connected
    return result


def breakdown(idle: dict, loaded: dict, clients: int, top: int = 25) -> dict:
    """Per connection: the heap's growth by allocation site and by type."""
    stats = loaded["snapshot"].compare_to(idle["snapshot"], "traceback")
    heap = sum(s.size_diff for s in stats)
    by_line: dict[str, int] = {}
    by_own: dict[str, int] = {}
    for stat in stats:
        frames = list(stat.traceback)[::-1]  # innermost first (a Traceback runs from the oldest frame)
        inner = frames[0]
        key = f"{_short(inner.filename)}:{inner.lineno}"
        by_line[key] = by_line.get(key, 0) + stat.size_diff
        own = next((f for f in frames if f.filename.startswith(OWN)), None)
        own_key = f"{_short(own.filename)}:{own.lineno}" if own else "(no frame in the site's code)"
        by_own[own_key] = by_own.get(own_key, 0) + stat.size_diff
    types = {
        name: (loaded["types"][name] - idle["types"].get(name, 0), loaded["sizes"][name] - idle["sizes"].get(name, 0))
        for name in loaded["types"]
    }
    # The connections the server holds (its WebSocket protocols), which may be fewer than the clients that
    # connected (a server slowed by tracemalloc closes clients that fall behind): the heap's growth is theirs.
    held = sum(n for name, (n, _) in types.items() if name.endswith("WebSocketProtocol"))
    clients = held or clients
    per = lambda size: round(size / clients, 1)  # noqa: E731
    return {
        "held_traced": held,
        "heap_bytes_per_connection": per(heap),
        "rss_traced_kib_per_connection": round((loaded["rss_kib"] - idle["rss_kib"]) / clients, 1),
        "by_site": _top(by_line, per, top),
        "by_own_frame": _top(by_own, per, top),
        "instances": [
            {
                "type": name,
                "per_connection": round(n / clients, 2),
                "attributes": round(loaded["attrs"][name] / loaded["types"][name]),
                "dict_bytes": round(loaded["dicts"][name] / loaded["types"][name]),
            }
            for name, (n, _) in sorted(
                types.items(), key=lambda kv: -loaded["dicts"].get(kv[0], 0) / loaded["types"][kv[0]]
            )
            if n >= clients / 2 and loaded["attrs"].get(name)
        ][:top],
        "by_type": [
            {"type": name, "objects": round(n / clients, 2), "bytes": per(size)}
            for name, (n, size) in sorted(types.items(), key=lambda kv: -kv[1][1])[:top]
        ],
    }


def _top(sizes: dict[str, int], per, top: int) -> list[dict]:
    return [{"where": k, "bytes": per(v)} for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:top]]


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(BASE_DIR) + "/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def report(result: dict) -> str:
    lines = [
        f"# Memory per WebSocket connection ({result['clients']} clients, each subscribed to {result['symbol']})",
        "",
        f"- RSS growth per connection, plain daphne: {result['rss_kib_per_connection']} KiB",
        f"- Python heap growth per connection (tracemalloc, {result['held_traced']} connections held): "
        f"{result['heap_bytes_per_connection'] / 1024:.1f} KiB",
        "",
        "## By allocation site (innermost frame), bytes per connection",
        *[f"- {row['bytes']:>8} {row['where']}" for row in result["by_site"]],
        "",
        "## By the first frame in the site's code, bytes per connection",
        *[f"- {row['bytes']:>8} {row['where']}" for row in result["by_own_frame"]],
        "",
        "## Instances with an attribute dict (a connection's objects), per instance",
        *[
            f"- {row['dict_bytes']:>6} B dict, {row['attributes']:>4} attributes, {row['per_connection']} a "
            f"connection: {row['type']}"
            for row in result["instances"]
        ],
        "",
        "## By type (garbage-collected objects, shallow size), per connection",
        *[f"- {row['bytes']:>8} B, {row['objects']:>6} objects: {row['type']}" for row in result["by_type"]],
    ]
    return "\n".join(lines) + "\n"
