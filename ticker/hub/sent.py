"""What one fan-out handed to its connections, as plain integers: read by /metrics (ticker/hub/figures.py) and the
operations view only when they ask, so nothing on the per-frame path takes a lock."""

from __future__ import annotations

import collections

from ticker.ops import metrics


class Sent:
    """What one fan-out handed to its connections, as plain integers (read at scrape time, never locked).

    ``add`` is for a frame written once; a broadcast adds its totals in one call (``add_many``).
    """

    __slots__ = ("frames", "bytes", "updates", "held_back", "resnapshotted", "recent_fanouts")

    def __init__(self) -> None:
        self.frames: dict[str, int] = collections.defaultdict(int)
        self.bytes: dict[str, int] = collections.defaultdict(int)
        self.updates = 0  # quotes in the per-step frames
        self.held_back = 0  # a connection found not reading: sent nothing until it reads again
        self.resnapshotted = 0  # a connection that was held back (or missed an outage) sent a snapshot instead
        self.recent_fanouts: collections.deque[float] = collections.deque(maxlen=240)  # about a minute of steps

    def add(self, kind: str, nbytes: int) -> None:
        self.frames[kind] += 1
        self.bytes[kind] += nbytes

    def add_many(self, kind: str, frames: int, nbytes: int, updates: int = 0) -> None:
        if frames:
            self.frames[kind] += frames
            self.bytes[kind] += nbytes
            self.updates += updates

    def fanned_out(self, seconds: float) -> None:
        """Called once per market step with the time its fan-out took."""
        metrics.fanout_seconds.observe(seconds)
        self.recent_fanouts.append(seconds)

    def fanout_p99(self) -> float | None:
        """The 99th percentile of the last minute's fan-outs, in seconds (None before the first)."""
        recent = sorted(self.recent_fanouts)
        return recent[min(len(recent) - 1, int(len(recent) * 0.99))] if recent else None
