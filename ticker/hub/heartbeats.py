"""Heartbeats: when every connection is told the feed's state (docs/protocol.md, "Server → client")."""

from __future__ import annotations

from dataclasses import dataclass

# How often the feed's state is looked at: a change is announced within this.
WATCH_EVERY_S = 0.5


@dataclass(slots=True)
class Beat:
    state: str
    changed: bool  # the feed's state differs from the last one announced


class Heartbeats:
    """Decides when a heartbeat is due: every ``period_s``, and at once when the feed's state changes. Pure."""

    def __init__(self, period_s: float, *, started_at: float, announced: str):
        self.period_s = period_s
        self.last_at = started_at
        self.announced = announced

    def due(self, state: str, now: float) -> Beat | None:
        """The heartbeat to send now, or None; call it every WATCH_EVERY_S."""
        changed = state != self.announced
        if not changed and now - self.last_at < self.period_s:
            return None
        self.last_at, self.announced = now, state
        return Beat(state, changed)
