"""The whole market's movers: top gainers and losers by change_pct, computed at most once a second. Pure."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from ticker.wire import protocol
from ticker.wire.frames import Frame

# The board is worked out at most this often (docs/protocol.md, "movers"), whoever asks: connections that
# follow movers, the immediate frame of a new follower, and GET /api/movers/.
MOVERS_EVERY_S = 1.0
# A timer may fire a hair before its time (asyncio runs what falls due within its clock's resolution).
_EARLY_S = 0.005


def _gain(quote: dict[str, Any]) -> tuple:
    return (-quote["change_pct"], quote["symbol"])


def _loss(quote: dict[str, Any]) -> tuple:
    return (quote["change_pct"], quote["symbol"])


class MoversBoard:
    """The latest gainers and losers (MAX_MOVERS of each), and each count's frame, encoded once.

    The fan-out marks it ``stale`` when the market changed; ``latest`` works it out again only when it
    is stale and the last one is at least MOVERS_EVERY_S old. Nobody asking costs nothing.
    """

    def __init__(self) -> None:
        self.at: float | None = None  # when it was last worked out (the hub's clock)
        self.stale = True
        self.step = 0
        self.listed = 0
        self.gainers: list[dict[str, Any]] = []
        self.losers: list[dict[str, Any]] = []
        self._frames: dict[int, Frame] = {}

    def due_at(self, now: float) -> float:
        """The earliest time it may be worked out again."""
        return now if self.at is None else max(now, self.at + MOVERS_EVERY_S)

    def latest(self, quotes: Callable[[], Iterable[dict[str, Any]]], step: int, now: float) -> MoversBoard:
        """This board, worked out again from ``quotes()`` first if the market changed and its second is up."""
        if self.stale and (self.at is None or now - self.at >= MOVERS_EVERY_S - _EARLY_S):
            held = list(quotes())
            self.gainers = heapq.nsmallest(protocol.MAX_MOVERS, held, key=_gain)
            self.losers = heapq.nsmallest(protocol.MAX_MOVERS, held, key=_loss)
            self.at, self.stale, self.step, self.listed = now, False, step, len(held)
            self._frames = {}
        return self

    def answer(self, count: int) -> dict[str, Any]:
        """The movers frame for ``count`` of each (GET /api/movers/ drops its "type")."""
        return protocol.movers_frame(self.gainers[:count], self.losers[:count], step=self.step, listed=self.listed)

    def frame(self, count: int) -> Frame:
        """The movers frame for ``count``, encoded once for every connection that asked for that count."""
        if (frame := self._frames.get(count)) is None:
            frame = self._frames[count] = Frame(protocol.encode(self.answer(count)), self.step, "movers")
        return frame

    def key(self, count: int) -> tuple:
        """What a connection's movers show: it is sent a new frame only when this changes."""
        return tuple((q["symbol"], q["seq"]) for q in self.gainers[:count]), tuple(
            (q["symbol"], q["seq"]) for q in self.losers[:count]
        )
