"""The one seq follower: a client's check that it saw every update of the feed, shared by benchmarks and tests.

The protocol (docs/protocol.md) gives each symbol a ``seq`` that grows by one
on every change, and each quotes frame the market ``step`` it carries. A
client that holds each symbol's last seq can tell an update it missed (a
jump), one it saw again or out of order (stale), and a frame whose step did
not grow. A snapshot is the new baseline: its seqs may jump ahead (the server
resnapshots a client that fell behind) but must never go back.

The transport benchmark, the fan-out load generator's sampled clients, the
WebSocket load check and the tests' ``Follower`` all keep count with this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Change(NamedTuple):
    """What one frame did to the held seqs."""

    moved: list[dict]  # the quotes that moved a held symbol forward
    missing: int  # updates skipped by those moves
    stale: int  # quotes at or below the held seq (quotes frames only)
    step_back: bool  # a quotes frame whose step did not grow


@dataclass
class SeqFollower:
    """Each symbol's last seq, and every break in the stream seen so far."""

    seq: dict[str, int] = field(default_factory=dict)
    step: int | None = None
    updates: int = 0  # quotes that moved a held symbol forward
    missing: int = 0  # updates skipped on the way
    stale: int = 0  # quotes at or below the held seq, in quotes frames
    gaps: list[tuple[str, int, int]] = field(default_factory=list)  # (symbol, held, got) in quotes frames
    steps_back: list[tuple[int, int]] = field(default_factory=list)  # (held step, got) in quotes frames
    backwards: list[tuple[str, int, int]] = field(default_factory=list)  # (symbol, held, got) in snapshots

    def take(self, frame: dict) -> Change:
        """Called with every decoded frame; frames other than snapshots and quotes change nothing."""
        kind = frame.get("type")
        if kind == "snapshot":
            return self.snapshot(frame["quotes"], frame.get("step"))
        if kind == "quotes":
            return self.quotes(frame["quotes"], frame.get("step"))
        return Change([], 0, 0, False)

    def snapshot(self, quotes: list[dict], step: int | None = None) -> Change:
        """A full state (a snapshot, or a polling answer): the new baseline.

        A newer seq counts as an update, with the ones it skipped as missing;
        an older one is recorded in ``backwards`` and the held seq kept.
        """
        moved, missing = [], 0
        for quote in quotes:
            symbol, seq = quote["symbol"], quote["seq"]
            held = self.seq.get(symbol)
            if held is not None and seq < held:
                self.backwards.append((symbol, held, seq))
                continue
            if held is not None and seq > held:
                moved.append(quote)
                missing += seq - held - 1
            self.seq[symbol] = seq
        if step is not None:
            self.step = step
        return self._count(moved, missing, 0, False)

    def quotes(self, quotes: list[dict], step: int | None = None) -> Change:
        """A quotes frame: each quote must continue its symbol's seq by one; a symbol not held yet starts there."""
        step_back = step is not None and self.step is not None and step <= self.step
        if step_back:
            self.steps_back.append((self.step, step))
        if step is not None:
            self.step = step
        moved, missing, stale = [], 0, 0
        for quote in quotes:
            symbol, seq = quote["symbol"], quote["seq"]
            held = self.seq.get(symbol)
            if held is None:
                self.seq[symbol] = seq
                continue
            if seq != held + 1:
                self.gaps.append((symbol, held, seq))
            if seq <= held:
                stale += 1
                continue
            moved.append(quote)
            missing += seq - held - 1
            self.seq[symbol] = seq
        return self._count(moved, missing, stale, step_back)

    def _count(self, moved: list[dict], missing: int, stale: int, step_back: bool) -> Change:
        self.updates += len(moved)
        self.missing += missing
        self.stale += stale
        return Change(moved, missing, stale, step_back)
