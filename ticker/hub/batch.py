"""One market step's frames, assembled from pieces encoded once, and which of them are compressed.

A connection on the delta format (``ticker.v2.json``, docs/protocol.md) gets
the same frames assembled from delta pieces (each symbol's changes, also
encoded once per step). A frame that several connections share is compressed
once for all of them (ticker/wire/frames.py); of the frames made for a single
connection, only the first ``COMPRESSED_SINGLES`` of each step may be, so
thousands of personal watchlists do not cost a compressor per client per step
(issue 14; docs/benchmarks.md, "Compression and deltas").
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

from ticker.hub.interest import Interest
from ticker.hub.outlet import Outlet
from ticker.wire import protocol

# Per market step, at most this many frames made for one connection alone are compressed (the oldest connections'
# first); the rest go uncompressed. Compressing a 20-quote frame costs 18-26 us, mostly setting up a fresh
# compressor: a third again of the ~70 us a personal watchlist's frame costs in all, over issue 14's bound of
# 1.2x (docs/benchmarks.md, "Compression and deltas").
COMPRESSED_SINGLES = 32


class CompressedSingles:
    """Per market step, which frames made for one connection alone may be compressed: the first
    ``COMPRESSED_SINGLES`` big enough to be; a frame several connections share always may."""

    __slots__ = ("min_bytes", "left")

    def __init__(self, min_bytes: int = 256):
        # TICKER_WS_COMPRESS_MIN_BYTES: an outlet sends shorter frames uncompressed, so they cost no budget.
        self.min_bytes = min_bytes
        self.left = COMPRESSED_SINGLES

    def renew(self) -> None:
        """Called at the start of each step's broadcast."""
        self.left = COMPRESSED_SINGLES

    def allows(self, outlet: Outlet, payload: bytes) -> bool:
        """May a frame made for this connection alone be compressed? Yes while this step's budget lasts."""
        if not outlet.deflate or len(payload) < self.min_bytes:
            return True  # nothing to spend: the outlet does not compress our frames, or not one this small
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class Batch:
    """One step's fresh quotes, in symbol order, each encoded once on first use (whole, and as a delta against
    ``previous``, the quotes they replaced), and picked per interest."""

    __slots__ = ("step", "symbols", "quotes", "pieces", "deltas", "picked")

    # After this many watchlist frames in one step (of one format) every fresh quote is encoded, and later
    # watchlists are picked with C-level look-ups (many personal watchlists together want nearly every quote;
    # a few need not pay for encoding all of a big market's).
    LAZY_WATCHLISTS = 32

    def __init__(self, step: int, fresh: list[dict[str, Any]], previous: dict[str, dict[str, Any]] | None = None):
        self.step = step
        ordered = sorted(fresh, key=itemgetter("symbol"))
        self.symbols = [q["symbol"] for q in ordered]
        self.quotes = dict(zip(self.symbols, ordered, strict=True))
        self.pieces = _Pieces(self.quotes, protocol.encode_quote)
        previous = previous or {}
        self.deltas = _Pieces(
            self.quotes, lambda quote: protocol.encode_quote(protocol.quote_delta(quote, previous.get(quote["symbol"])))
        )
        self.picked = 0  # quotes in the last frame ``payload`` made (the updates it delivers)

    def wanted(self, interest: Interest) -> list[str]:
        """The fresh symbols ``interest`` wants, in symbol order; a watchlist costs a look-up per symbol it holds."""
        if interest.everything:
            excluded = interest.symbols
            return [s for s in self.symbols if s not in excluded] if excluded else self.symbols
        quotes = self.quotes
        if len(interest.symbols) <= len(quotes):
            return [s for s in interest.ordered if s in quotes]
        return [s for s in self.symbols if s in interest.symbols]

    def payload(self, interest: Interest, delta: bool = False) -> bytes | None:
        """The quotes frame for ``interest``, assembled from the encoded quotes (or deltas); None when it wants none."""
        pieces, quotes = self.deltas if delta else self.pieces, self.quotes
        if not interest.everything and len(interest.symbols) <= len(quotes):
            # A watchlist: one pass over its own symbols, no list of names first.
            if pieces.lazy_watchlists:
                pieces.lazy_watchlists -= 1
                if not pieces.lazy_watchlists:
                    pieces.encode_all()
                picked = [pieces[s] for s in interest.ordered if s in quotes]
            else:
                picked = list(filter(None, map(pieces.get, interest.ordered)))
        else:
            picked = [pieces[s] for s in self.wanted(interest)]
        self.picked = len(picked)
        return protocol.quotes_payload(picked, step=self.step) if picked else None


class _Pieces(dict):
    """symbol -> its quote's JSON (``encode``): encoded the first time a frame of the step needs it, then shared."""

    __slots__ = ("quotes", "encode", "lazy_watchlists")

    def __init__(self, quotes: dict[str, dict[str, Any]], encode: Callable[[dict[str, Any]], bytes]):
        super().__init__()
        self.quotes = quotes
        self.encode = encode
        self.lazy_watchlists = Batch.LAZY_WATCHLISTS  # watchlist frames left before ``encode_all``

    def __missing__(self, symbol: str) -> bytes:
        piece = self[symbol] = self.encode(self.quotes[symbol])
        return piece

    def encode_all(self) -> None:
        """Encode every fresh quote not encoded yet; from then on ``get`` finds each (and None for the rest)."""
        for symbol in self.quotes.keys() - self.keys():
            self[symbol] = self.encode(self.quotes[symbol])
