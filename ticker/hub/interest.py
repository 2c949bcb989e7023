"""What one connection wants: a set of symbols, or every symbol (those listed later too) but some."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Interest:
    """Every symbol except ``symbols`` (``everything``), or exactly ``symbols``.

    Hashable: the hub encodes each frame once per distinct interest. Kept as
    "every symbol but these" rather than as the symbols listed today, so a
    client on ``["*"]`` that unsubscribes one symbol still gets symbols listed
    later (docs/protocol.md, "every symbol, including ones listed later").
    """

    everything: bool
    symbols: frozenset[str] = frozenset()
    # ``symbols`` in symbol order, sorted once: the fan-out picks a watchlist's quotes of a step by looking
    # each of its symbols up, instead of testing every quote of the step (fanout.Batch).
    ordered: tuple[str, ...] = field(init=False, repr=False, compare=False, hash=False)
    # The hash, worked out once: the fan-out looks every connection's interest up on every step.
    _hash: int = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ordered", tuple(sorted(self.symbols)))
        object.__setattr__(self, "_hash", hash((self.everything, self.symbols)))

    def __hash__(self) -> int:
        return self._hash

    def wants(self, symbol: str) -> bool:
        return (symbol in self.symbols) != self.everything

    @property
    def empty(self) -> bool:
        return not self.everything and not self.symbols

    def plus(self, symbols: Iterable[str]) -> Interest:
        if self.everything:
            return Interest(True, self.symbols.difference(symbols))
        return Interest(False, self.symbols.union(symbols))

    def minus(self, symbols: Iterable[str]) -> Interest:
        if self.everything:
            return Interest(True, self.symbols.union(symbols))
        return Interest(False, self.symbols.difference(symbols))

    def select(self, quotes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The quotes this interest wants, in their order."""
        if self.everything and not self.symbols:
            return list(quotes)
        return [q for q in quotes if self.wants(q["symbol"])]


EVERYTHING = Interest(True)
NOTHING = Interest(False)


def of(symbols: Iterable[str] | None) -> Interest:
    """``None``: every symbol; otherwise just those named."""
    return EVERYTHING if symbols is None else Interest(False, frozenset(symbols))
