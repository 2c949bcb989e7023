"""A token bucket: how many client messages a connection may send. Pure Python, no Django.

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
