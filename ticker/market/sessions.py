"""Trading sessions: pure Python, no Django (ticker/market/prices.py re-exports these).

The market trades in simulated sessions: open for some simulated hours, then closed, in simulated time that runs
``speed`` times wall-clock time. The schedule is a pure function of the wall clock, so every process that knows
the settings agrees on it.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN, CLOSED = "open", "closed"


@dataclass(frozen=True, slots=True)
class Session:
    """The trading session at some moment: its state, when that state ends, and the cycle's number."""

    state: str
    until: int  # epoch ms of the next change of state
    number: int  # counts open-then-closed cycles since the epoch


@dataclass(frozen=True, slots=True)
class Schedule:
    """Sessions open ``open_ms`` then closed ``closed_ms`` of wall-clock time, cycles counted from the epoch."""

    open_ms: int
    closed_ms: int

    @classmethod
    def of(cls, *, open_hours: float, closed_hours: float, speed: float) -> Schedule:
        """The wall-clock schedule of sessions of these simulated lengths at ``speed`` times real time."""
        if open_hours <= 0 or closed_hours < 0 or speed <= 0:
            raise ValueError("the open session and the speed must be positive, the closed time not negative")
        return cls(round(open_hours * 3_600_000 / speed), round(closed_hours * 3_600_000 / speed))

    def at(self, ts: int) -> Session:
        cycle = self.open_ms + self.closed_ms
        number, into = divmod(ts, cycle)
        start = number * cycle
        if into < self.open_ms or not self.closed_ms:
            return Session(OPEN, start + self.open_ms, number)
        return Session(CLOSED, start + cycle, number)


ALWAYS_OPEN = Schedule(open_ms=1 << 62, closed_ms=0)
