"""Token buckets: how many client messages, and frames, a connection may send. Pure Python, no Django.

The bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second;
every message takes one. A client may therefore send ``burst`` messages at
once and ``rate`` a second for as long as it likes, and no more. Time is
passed in (a monotonic clock in seconds), so the logic is tested without
sleeping.
"""

from __future__ import annotations


class TokenBucket:
    """One connection's allowance of messages."""

    __slots__ = ("rate", "burst", "_tokens", "_updated")

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, not rate={rate!r}, burst={burst!r}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)  # a new connection may send its burst at once
        self._updated = now

    def take(self, now: float) -> bool:
        """Called for every message: True if it is allowed (and counted), False if over the limit."""
        # max(): a clock that steps back must not drain the bucket.
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._updated = max(now, self._updated)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


# Frames, not only messages (issue 21): one message sent as a million one-byte continuation frames, or a flood of
# pings, cost daphne seconds of CPU while the message bucket above saw one message or none. ``FrameGuard`` is
# asked as each client frame's header is read (ticker/edge/server.py), before its payload is buffered.
RATE_LIMITED, TOO_FRAGMENTED, TOO_LARGE = "rate_limited", "too_fragmented", "too_large"
# permessage-deflate may make an incompressible message a little longer on the wire (stored blocks: a few bytes
# per block); a compressed message's own frames may be this much over the size limit, its inflated bytes not.
DEFLATE_SLACK_BYTES = 1024


class FrameGuard:
    """One WebSocket connection's client frames: every frame (data, continuation, ping, pong) takes a token from
    its bucket, and a message may have at most ``max_fragments`` frames and ``max_bytes`` bytes.

    ``frame`` and ``inflated`` answer None (go on) or the reason to close: ``RATE_LIMITED``, ``TOO_FRAGMENTED``
    or ``TOO_LARGE``.
    """

    __slots__ = ("budget", "max_fragments", "max_bytes", "fragments", "wire_bytes", "inflated_bytes", "compressed")

    def __init__(self, *, rate: float, burst: int, max_fragments: int, max_bytes: int, now: float) -> None:
        self.budget = TokenBucket(rate=rate, burst=burst, now=now)
        self.max_fragments, self.max_bytes = max_fragments, max_bytes
        self.fragments = self.wire_bytes = self.inflated_bytes = 0
        self.compressed = False

    def frame(self, *, data: bool, first: bool, length: int, now: float, compressed: bool = False) -> str | None:
        """Called as a frame's header has been read: ``data`` for a text, binary or continuation frame,
        ``first`` for the frame that starts a message (then ``compressed``: RSV1 set), ``length`` its payload's."""
        if not self.budget.take(now):
            return RATE_LIMITED
        if not data:
            return None
        if first:
            self.fragments = self.wire_bytes = self.inflated_bytes = 0
            self.compressed = compressed
        self.fragments += 1
        self.wire_bytes += length
        if self.fragments > self.max_fragments:
            return TOO_FRAGMENTED
        if self.wire_bytes > self.max_bytes + (DEFLATE_SLACK_BYTES if self.compressed else 0):
            return TOO_LARGE
        return None

    def inflated(self, nbytes: int) -> str | None:
        """Called with each piece of a compressed message as it is inflated: its size, before it is kept."""
        self.inflated_bytes += nbytes
        return TOO_LARGE if self.inflated_bytes > self.max_bytes else None
