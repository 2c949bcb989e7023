"""The process's latest quote of every listed symbol, the step each last changed in, and a way to wait for a change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from ticker.hub.interest import EVERYTHING, Interest


class QuoteStore:
    """Latest quotes by symbol; only quotes with a higher ``seq`` than the held one replace it."""

    def __init__(self) -> None:
        self.step = 0
        # The trading session as of the latest batch or stored market ({"state", "until"}; None before either).
        self.session: dict[str, Any] | None = None
        self._quotes: dict[str, dict[str, Any]] = {}
        # The market step in which each symbol last changed (long-poll, SSE resume).
        self._changed: dict[str, int] = {}
        # Replaced by a fresh Event after every step that changed something.
        self._stepped = asyncio.Event()
        # The quotes the last ``apply`` replaced, by symbol: what the delta format compares each fresh quote with.
        self.previous: dict[str, dict[str, Any]] = {}

    def known(self, symbol: str) -> bool:
        return symbol in self._quotes

    def quotes(self) -> Iterable[dict[str, Any]]:
        """The latest quote of every listed symbol, in no particular order (the movers)."""
        return self._quotes.values()

    def symbols(self) -> set[str]:
        return set(self._quotes)

    def apply(self, step: int, quotes: list[dict[str, Any]], steps: list[int] | None = None) -> list[dict[str, Any]]:
        """Record quotes newer than what is held; return just those.

        A quote whose ``seq`` is not above the held one is a duplicate (for
        example a batch that was queued while the hub loaded its snapshot).
        ``steps`` gives each quote's own change step when it is not ``step``.
        """
        fresh = []
        previous = self.previous = {}
        for i, quote in enumerate(quotes):
            held = self._quotes.get(quote["symbol"])
            if held is None or quote["seq"] > held["seq"]:
                if held is not None:
                    previous[quote["symbol"]] = held
                self._quotes[quote["symbol"]] = quote
                self._changed[quote["symbol"]] = steps[i] if steps else step
                fresh.append(quote)
        self.step = max(self.step, step)
        if fresh:
            self._stepped.set()
            self._stepped = asyncio.Event()
        return fresh

    def continues(self, quotes: list[dict[str, Any]]) -> bool:
        """True unless a quote skips past the held seq of its symbol (an update this store never saw)."""
        for quote in quotes:
            held = self._quotes.get(quote["symbol"])
            if held is not None and quote["seq"] > held["seq"] + 1:
                return False
        return True

    def delist(self, symbols) -> None:
        """Forget symbols the operator deactivated: no longer in snapshots, not subscribable."""
        for symbol in symbols:
            self._quotes.pop(symbol, None)
            self._changed.pop(symbol, None)

    def replace(self, step: int, quotes: list[dict[str, Any]], steps: list[int]) -> list[dict[str, Any]]:
        """Take a stored market as the truth: symbols it lacks are delisted; return the quotes that were news."""
        self.delist(set(self._quotes) - {q["symbol"] for q in quotes})
        return self.apply(step, quotes, steps)

    def snapshot(self, interest: Interest = EVERYTHING) -> list[dict[str, Any]]:
        """The latest quote of every symbol the interest wants, by symbol."""
        if not interest.everything:
            return [self._quotes[s] for s in sorted(interest.symbols) if s in self._quotes]
        return interest.select(self._quotes[s] for s in sorted(self._quotes))

    def changed_since(self, since: int, interest: Interest = EVERYTHING) -> list[dict[str, Any]]:
        """The latest quote of every wanted symbol that changed after step ``since``."""
        return [q for q in self.snapshot(interest) if self._changed.get(q["symbol"], 0) > since]

    async def wait_for_change(self, since: int, interest: Interest, wait_s: float) -> list[dict[str, Any]]:
        """Wait up to ``wait_s`` seconds for a change after ``since``; return the changed quotes, or []."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not (changed := self.changed_since(since, interest)):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stepped.wait(), remaining)
        return changed
