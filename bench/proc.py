"""What the benchmarks read from Linux about the processes they measure (/proc) and the limits they need."""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process, or None when unknown (counted in /proc's 10 ms ticks)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB; 0 when /proc does not say."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tcp_segments() -> int | None:
    """Segments sent by this machine's TCP (every loopback segment is sent once)."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Tcp:")]
    except OSError:
        return None
    header, values = lines[0], lines[1]
    return int(values[header.index("OutSegs")])


def raise_fd_limit(needed: int) -> None:
    """Raise this process's open-file limit towards ``needed`` (as far as the hard limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(needed, soft), hard), hard))


def run_delay_s(pid: int | None) -> float | None:
    """Seconds the process's threads spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat, field 2):
    on a shared machine, how much a pinned process was kept off its core by others."""
    if pid is None:
        return None
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[1])
    except OSError:
        return None
    return total / 1e9
