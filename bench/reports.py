"""Benchmark output: the machine, a Markdown table and a PNG chart."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

COLUMNS = [
    ("transport", "transport", lambda r: r["transport"]),
    ("clients", "clients", lambda r: r["connected"]),
    ("updates/s", "updates delivered per second", lambda r: r["updates_per_s"]),
    ("p50 ms", "latency p50", lambda r: r["latency_ms"]["p50"]),
    ("p95 ms", "latency p95", lambda r: r["latency_ms"]["p95"]),
    ("p99 ms", "latency p99", lambda r: r["latency_ms"]["p99"]),
    ("bytes/update", "bytes on the client sockets per update", lambda r: r["bytes_per_update"]),
    (
        "payload",
        "JSON the application reads (decompressed where it came compressed)",
        lambda r: r["payload_bytes_per_update"],
    ),
    (
        "wire payload",
        "of bytes/update, that payload as sent (permessage-deflate compressed, where negotiated)",
        lambda r: r.get("wire_payload_bytes_per_update", r["payload_bytes_per_update"]),
    ),
    (
        "overhead",
        "of bytes/update, protocol overhead (bytes/update - wire payload)",
        lambda r: r["overhead_bytes_per_update"],
    ),
    (
        "RSV1 %",
        "share of the WebSocket frames received compressed (RSV1 set)",
        lambda r: (
            round(100 * r["compressed_frames"] / r["frames"], 1)
            if r.get("frames") and r["transport"].startswith("websocket")
            else None
        ),
    ),
    ("TCP/IP est.", "estimated TCP/IP header bytes per update", lambda r: r["tcp_ip_bytes_per_update_est"]),
    ("req/s", "requests per second", lambda r: r["requests_per_s"]),
    ("CPU ms/1k", "server CPU ms per 1,000 updates", lambda r: r["server_cpu_ms_per_1000_updates"]),
    ("lost", "lost (never seen) updates", lambda r: r["lost_updates"]),
]


def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu or platform.machine()}), {memory:.0f} GiB, Python {platform.python_version()}"


def markdown(config: dict, results: list[dict], ratios: list[dict] = ()) -> str:
    lines = [
        f"Machine: {config['machine']}. {config['date']}. {config['clients']} clients per transport, "
        f"{config['duration_s']:g} s each, following {config.get('symbols', '*')}, "
        f"poll interval {config['poll_interval_s']:g} s, "
        f"market step {config['market_interval_ms']} ms.",
        "",
        *_table(COLUMNS, results),
    ]
    if ratios:
        lines += ["Ratios, measured in this run (issue 14):", "", *(f"- {ratio_line(r)}" for r in ratios), ""]
    return "\n".join(lines)


def ratio_line(ratio: dict) -> str:
    """One ratio of ``bench.transports.ratios`` in words: on the sockets, then with the TCP/IP estimate."""

    def verdict(met):
        return "n/a" if met is None else ("met" if met else "not met")

    tcp = ratio["with_tcp_ip_est"]
    return (
        f"{ratio['ratio']}, bytes per update: **{ratio['bytes_per_update']:.3f}** "
        f"(target {ratio['target']}: {verdict(ratio['met'])}); with the TCP/IP estimate: "
        f"{'n/a' if tcp is None else f'{tcp:.3f}'} ({verdict(ratio['met_with_tcp_ip_est'])})"
    )


def _table(columns: list, rows: list[dict]) -> list[str]:
    """A Markdown table of ``rows`` (one per result), then a line saying what each column means."""
    lines = ["| " + " | ".join(short for short, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(get(row)) for _, _, get in columns) + " |" for row in rows]
    return [*lines, "", "Columns: " + "; ".join(f"**{short}** = {long}" for short, long, _ in columns) + ".", ""]


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["transport"] for r in results]
    panels = [
        ("server CPU ms per 1,000 updates", [r["server_cpu_ms_per_1000_updates"] or 0 for r in results]),
        ("bytes per update (payload + overhead)", None),
        ("latency p50 / p99 (ms)", None),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    axes[0].bar(names, panels[0][1], color="#2e6da4")
    axes[0].set_title(panels[0][0])
    payload = [r["payload_bytes_per_update"] or 0 for r in results]
    overhead = [r["overhead_bytes_per_update"] or 0 for r in results]
    tcp = [r["tcp_ip_bytes_per_update_est"] or 0 for r in results]
    wire = [r.get("wire_payload_bytes_per_update", r["payload_bytes_per_update"]) or 0 for r in results]
    axes[1].bar(names, wire, label="payload as sent", color="#1e8449")
    axes[1].bar(names, overhead, bottom=payload, label="HTTP / WebSocket overhead", color="#b9770e")
    axes[1].bar(
        names,
        tcp,
        bottom=[p + o for p, o in zip(wire, overhead, strict=True)],
        label="TCP/IP headers (est.)",
        color="#aaaaaa",
    )
    # The JSON the application reads: above the bar where it came compressed.
    axes[1].scatter(names, payload, marker="_", s=400, color="#000000", label="JSON decompressed", zorder=3)
    axes[1].set_title(panels[1][0])
    axes[1].legend(fontsize=8)
    p50 = [r["latency_ms"]["p50"] or 0 for r in results]
    p99 = [r["latency_ms"]["p99"] or 0 for r in results]
    x = range(len(names))
    axes[2].bar([i - 0.2 for i in x], p50, width=0.4, label="p50", color="#2e6da4")
    axes[2].bar([i + 0.2 for i in x], p99, width=0.4, label="p99", color="#c0392b")
    axes[2].set_xticks(list(x), names)
    axes[2].set_title(panels[2][0])
    axes[2].legend(fontsize=8)
    for axis in axes:  # seven transports, some with long names
        axis.tick_params(axis="x", labelrotation=35, labelsize=8)
        for label in axis.get_xticklabels():
            label.set_horizontalalignment("right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


FANOUT_COLUMNS = [
    ("server", "server under test", lambda r: r["label"]),
    ("clients", "connected clients", lambda r: r["clients"]),
    ("frames/s", "quotes frames delivered per second", lambda r: r["frames_per_s"]),
    ("p50 ms", "latency p50, market to client socket", lambda r: r["latency_ms"]["p50"]),
    ("p99 ms", "latency p99", lambda r: r["latency_ms"]["p99"]),
    (
        "lost",
        "frames a client missed between two it received (by step) + updates missed by one client in 20"
        " (by seq; every client with personal watchlists, where the by-step count is n/a) / clients that"
        " received nothing",
        lambda r: f"{_cell(r['lost_frames'])}+{r['lost_updates_sampled']} / {r.get('silent_clients', 0)}",
    ),
    (
        "RSV1 %",
        "share of the frames that came compressed (permessage-deflate)",
        lambda r: None if r.get("compressed_share") is None else round(100 * r["compressed_share"], 1),
    ),
    ("server us/frame", "server CPU per delivered frame", lambda r: r["server_cpu_us_per_frame"]),
    ("server CPU", "share of one core the server used", lambda r: r["server_cpu_share"]),
    ("generator us/frame", "load generator CPU per frame", lambda r: r["generator_cpu_us_per_frame"]),
    ("KiB/conn", "server memory per connection (RSS growth)", lambda r: r["server_kib_per_connection"]),
]


def fanout_markdown(config: dict, rows: list[dict], ratios: list[str]) -> str:
    if config.get("watchlist"):
        who = (
            f"{config['symbols']} listed symbols; the site measured twice, every client on the "
            f"{config['seeded']} seeded symbols (broadcast) and each client on its own {config['watchlist']} "
            f"random symbols (personal watchlists)"
        )
    else:
        who = f"{config['symbols']} symbols, every client on all of them"
    lines = [
        f"Machine: {config['machine']}. {config['date']}. Market step {config['market_interval_ms']} ms, "
        f"{who}; {config['duration_s']:g} s measured per step. "
        "Each server pinned to core 0, the load generator to core 1."
        + (
            " Rows NAME-deflate: the same site, its clients offering permessage-deflate (the load generator "
            "inflates only the sampled clients' frames, after the window: their latency and steps only)."
            if config.get("compression", "off") != "off"
            else ""
        ),
        "",
        *_table(FANOUT_COLUMNS, rows),
    ]
    if ratios:
        lines += ["Ratios, measured in this run:", "", *(f"- {line}" for line in ratios), ""]
    return "\n".join(lines)


def fanout_chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for label in dict.fromkeys(r["label"] for r in rows if r["processes"] == 1):
        mine = [r for r in rows if r["label"] == label]
        clients = [r["clients"] for r in mine]
        axes[0].plot(clients, [r["server_cpu_us_per_frame"] or 0 for r in mine], marker="o", label=label)
        axes[1].plot(clients, [r["latency_ms"]["p99"] or 0 for r in mine], marker="o", label=label)
    for row in rows:
        if row["processes"] > 1:
            axes[1].scatter([row["clients"]], [row["latency_ms"]["p99"] or 0], marker="*", s=150, label=row["label"])
    axes[0].set_title("server CPU per delivered frame (us)")
    axes[1].set_title("latency p99, market to client (ms)")
    axes[1].axhline(100, color="#999999", linestyle="--", linewidth=1)
    for axis in axes:
        axis.set_xlabel("connected clients")
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
