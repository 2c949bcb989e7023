"""A connection's ``max_rate``: at most one quotes frame per interval, the latest quote of each symbol winning."""

from __future__ import annotations

from ticker.hub.clock import Timer
from ticker.hub.interest import Interest
from ticker.wire import protocol


class RateCap:
    """Conflation for one connection. Pure: the caller passes the time and owns the timer.

    Between two frames the latest quote of each symbol wins; a frame that
    folded several updates of a symbol says ``"conflated": true``, so the
    client knows its seq jumps are not losses. It holds each quote as the
    step encoded it (``protocol.encode_quote``), so a capped frame is
    assembled like any other.
    """

    __slots__ = ("interval", "next_at", "pending", "merged", "timer")

    def __init__(self, max_rate: float):
        self.interval = 1 / max_rate
        self.next_at = 0.0
        self.pending: dict[str, bytes] = {}  # symbol -> its latest quote, encoded
        self.merged = False
        self.timer: Timer | None = None  # the flush scheduled for next_at, if any

    def hold(self, symbols: list[str], pieces: dict[str, bytes]) -> None:
        """Keep these symbols' quotes of this step (``pieces``: each symbol's encoded quote)."""
        pending = self.pending
        for symbol in symbols:
            self.merged |= symbol in pending
            pending[symbol] = pieces[symbol]

    def forget(self, interest: Interest | None = None) -> None:
        """Drop held quotes a fresh snapshot has just superseded (None: all of them)."""
        if interest is None:
            self.pending.clear()
        else:
            for symbol in [s for s in self.pending if interest.wants(s)]:
                del self.pending[symbol]

    def retimed(self, max_rate: float | None) -> RateCap | None:
        """This cap with a new rate (what it holds kept), or None to lift it."""
        self.cancel()
        if max_rate is None:
            return None
        cap = RateCap(max_rate)
        cap.pending, cap.merged = self.pending, self.merged
        return cap

    def take(self, interest: Interest, step: int, now: float) -> bytes | None:
        """The frame to send now (held quotes still wanted, by symbol), or None; starts the next interval."""
        pieces = [piece for symbol, piece in sorted(self.pending.items()) if interest.wants(symbol)]
        merged = self.merged
        self.pending = {}
        self.merged = False
        if not pieces:
            return None
        self.next_at = now + self.interval
        return protocol.quotes_payload(pieces, step=step, conflated=merged)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
