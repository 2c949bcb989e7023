"""The wire protocol in one place: message shapes, validation, names.

docs/protocol.md is the reader's version of this module. Every client
message is parsed by ``parse_client_message``, which either returns a
``Command`` or raises ``ProtocolError``; the consumer turns that error into
one ``{"type": "error", ...}`` frame and keeps the connection open (except
past the rate or size limit: ticker.edge.consumers.CLOSE_CODES).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from ticker.market.prices import Session, Tick

# The channel-layer group every web process's hub joins; the market sends
# one "quote.batch" message to it per step.
QUOTES_GROUP = "quotes"
BATCH_EVENT = "quote.batch"

ALL = "*"
ACTIONS = ("subscribe", "unsubscribe", "ping", "movers", "whoami")
# Caps that keep one client from making the server do unbounded work.
MAX_MESSAGE_BYTES = 16 * 1024
# A client message may come in at most this many frames (one and its continuations); checked frame by frame by
# the server adapter (ticker/edge/server.py; issue 21). Browsers and common clients send one frame per message.
MAX_MESSAGE_FRAGMENTS = 64
MAX_SYMBOLS_PER_MESSAGE = 100
# Movers: at most this many gainers and losers each ("count"); the HTTP endpoint's default.
MAX_MOVERS = 20
DEFAULT_MOVERS = 10


class ProtocolError(Exception):
    """A request the server will not act on: an error frame on a WebSocket, a JSON error over HTTP.

    ``status`` and ``headers`` are for HTTP (ticker.edge.http answers every
    ProtocolError the same way); ``extra`` goes into the error body.
    """

    def __init__(self, code: str, message: str, *, status: int = 400, headers: dict | None = None, **extra: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}
        self.extra = extra

    def frame(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "message": self.message, **self.extra}


# How much of a client's bad input an error message quotes: enough to recognise it, never a
# 5,000-character symbol echoed whole (the full list stays in the error's "symbols" for programs).
QUOTED_CHARS = 40
QUOTED_SYMBOLS = 10


def quoted(text: str, limit: int = QUOTED_CHARS) -> str:
    """``text`` as an error message quotes it: at most ``limit`` characters, then an ellipsis."""
    return text if len(text) <= limit else f"{text[:limit]}…"


def unknown_symbols(symbols: list[str], *, status: int = 400) -> ProtocolError:
    """The one answer to symbols that are not listed (WebSocket, SSE, polling, history)."""
    named = ", ".join(quoted(s) for s in symbols[:QUOTED_SYMBOLS])
    if len(symbols) > QUOTED_SYMBOLS:
        named += f" and {len(symbols) - QUOTED_SYMBOLS} more"
    return ProtocolError("unknown_symbol", f"Unknown symbol(s): {named}.", status=status, symbols=symbols)


def unavailable(retry_after_s: int) -> ProtocolError:
    """No quotes to serve yet (Redis and the database both unreachable since start-up): come back later."""
    return ProtocolError(
        "unavailable",
        f"The live feed is not available yet; try again in {retry_after_s} s.",
        status=503,
        headers={"Retry-After": str(retry_after_s)},
    )


def server_full(limit: int, retry_after_s: int) -> ProtocolError:
    """The web process holds its cap of connections (TICKER_MAX_CONNECTIONS): come back later, or elsewhere."""
    return ProtocolError(
        "server_full",
        f"This server holds its limit of {limit} live connections; try again in {retry_after_s} s.",
        status=503,
        headers={"Retry-After": str(retry_after_s)},
    )


def address_full(limit: int, retry_after_s: int) -> ProtocolError:
    """The client's address holds its share of the process's connections (TICKER_MAX_CONNECTIONS_PER_ADDRESS,
    issue 21): come back once one of them has closed."""
    return ProtocolError(
        "address_full",
        f"Too many connections from your address ({limit}); close one, or try again in {retry_after_s} s.",
        status=503,
        headers={"Retry-After": str(retry_after_s)},
    )


# Per-connection frame rate cap a subscribe may ask for ("max_rate").
MAX_RATE_LIMITS = (0.1, 100.0)
UNCHANGED = object()  # a subscribe without "max_rate" leaves the connection's cap as it is


@dataclass(frozen=True, slots=True)
class Command:
    action: str
    symbols: tuple[str, ...] = ()
    # Frames per second at most (None: no cap), or UNCHANGED.
    max_rate: float | None | object = UNCHANGED
    # "movers": how many gainers and losers each (0 stops them).
    count: int = 0


def parse_client_message(text: str | None) -> Command:
    """Validate one client text frame; raise ProtocolError when it is not usable."""
    if text is None:
        raise ProtocolError("bad_frame", "Send text frames holding JSON; binary frames are not used.")
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"Messages are at most {MAX_MESSAGE_BYTES} bytes.")
    data = _json(text)
    if not isinstance(data, dict):
        raise ProtocolError("bad_message", 'A message is a JSON object such as {"action": "ping"}.')
    if "action" not in data:
        raise ProtocolError("unknown_action", f'"action" is required: one of {", ".join(ACTIONS)}.')
    action = data["action"]
    if action not in ACTIONS:
        # Shown as JSON (what the client sent), cut short: an action may be any JSON value of any size.
        shown = quoted(json.dumps(action, ensure_ascii=False))
        raise ProtocolError("unknown_action", f"Unknown action {shown}: use one of {', '.join(ACTIONS)}.")
    if action in ("ping", "whoami"):
        return Command(action)
    if action == "movers":
        return Command("movers", count=movers_count(data.get("count")))
    symbols = data.get("symbols")
    if not isinstance(symbols, list) or not symbols:
        raise ProtocolError(
            "bad_symbols", f'"{action}" needs "symbols": a non-empty list of symbols, or ["*"] for all.'
        )
    if len(symbols) > MAX_SYMBOLS_PER_MESSAGE:
        raise ProtocolError(
            "too_many_symbols", f'At most {MAX_SYMBOLS_PER_MESSAGE} symbols per message; use ["*"] for all.'
        )
    if not all(isinstance(s, str) for s in symbols):
        raise ProtocolError("bad_symbols", '"symbols" must hold strings only.')
    cleaned = tuple(dict.fromkeys(s.strip().upper() for s in symbols))
    if ALL in cleaned and len(cleaned) > 1:
        raise ProtocolError("bad_symbols", '"*" means every symbol; send it alone.')
    if action == "subscribe" and "max_rate" in data:
        return Command(action, cleaned, _max_rate(data["max_rate"]))
    return Command(action, cleaned)


def _not_a_number(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number (RFC 8259 6)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {quoted(text)} is too large")
    return value


def _json(text: str) -> Any:
    """The message's JSON value; any reason it cannot be read is ``bad_json`` and the socket stays open.

    Issue 20: ``"[" * 2000 + "]" * 2000`` (4 KB) made json.loads raise RecursionError, which is not
    a ValueError, and the consumer died with close 1011. NaN, Infinity and numbers too large for a
    float are not JSON either (RFC 8259 6), so no later check has to think about them; an integer
    of more than 4,300 digits is refused by Python itself (a ValueError, sys.int_info).
    """
    try:
        return json.loads(text, parse_constant=_not_a_number, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ProtocolError("bad_json", f"Message is not valid JSON: {quoted(reason, 120)}.") from None


def _max_rate(value: Any) -> float | None:
    low, high = MAX_RATE_LIMITS
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ProtocolError(
            "bad_max_rate", f'"max_rate" is frames per second, from {low:g} to {high:g}, or null for no cap.'
        )
    return float(value)


def movers_count(value: Any) -> int:
    """A movers ``count``: a whole number from 0 (stop) to MAX_MOVERS; raises ProtocolError ``bad_count``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MOVERS:
        raise ProtocolError(
            "bad_count", f'"count" is how many gainers and losers: a whole number from 0 to {MAX_MOVERS}.'
        )
    return value


def quote(tick: Tick) -> dict[str, Any]:
    """The quote shape shared by every transport (WebSocket, polling)."""
    return {
        "symbol": tick.symbol,
        "price": float(tick.price),
        "prev_close": float(tick.prev_close),
        "change": float(tick.change),
        "change_pct": tick.change_pct,
        "open": float(tick.open),
        "high": float(tick.high),
        "low": float(tick.low),
        "volume": tick.volume,
        "seq": tick.seq,
        "ts": tick.ts,
        "halted": tick.halted,
    }


# WebSocket subprotocols (docs/protocol.md, "Quote formats"). A client that asks for DELTA_SUBPROTOCOL gets, in
# its quotes frames, each symbol's changes since its previous quote; any other (or none) gets whole quotes.
DELTA_SUBPROTOCOL = "ticker.v2.json"
# Every field of a whole quote (``quote``): a delta carries all of them only when it is a whole quote.
QUOTE_FIELDS = (
    "symbol",
    "price",
    "prev_close",
    "change",
    "change_pct",
    "open",
    "high",
    "low",
    "volume",
    "seq",
    "ts",
    "halted",
)
# Not in a delta: they follow from price and prev_close (market.change_pct says exactly how), and change with
# every price, so a delta would always carry them.
DERIVED_FIELDS = ("change", "change_pct")
_NOT_COMPARED = frozenset(("symbol", "seq", *DERIVED_FIELDS))


def quote_delta(quote: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """``quote`` as the delta format sends it: ``symbol`` and ``seq``, then each field that changed since
    ``previous`` (that symbol's quote at ``seq - 1``) except the derived ones; the whole quote when
    ``previous`` is not that quote (none held, or the hub missed steps)."""
    if previous is None or previous["seq"] != quote["seq"] - 1:
        return quote
    delta = {"symbol": quote["symbol"], "seq": quote["seq"]}
    for key, value in quote.items():
        if key not in _NOT_COMPARED and previous.get(key) != value:
            delta[key] = value
    return delta


def session(session: Session) -> dict[str, Any]:
    """The trading session on the wire: in every batch, heartbeat, snapshot and HTTP answer."""
    return {"state": session.state, "until": session.until}


def snapshot_frame(quotes: list[dict[str, Any]], *, step: int, session: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "snapshot", "step": step, "quotes": quotes, "session": session}


def quotes_frame(quotes: list[dict[str, Any]], *, step: int) -> dict[str, Any]:
    return {"type": "quotes", "step": step, "quotes": quotes}


def movers_frame(
    gainers: list[dict[str, Any]], losers: list[dict[str, Any]], *, step: int, listed: int
) -> dict[str, Any]:
    """The whole market's top gainers (change_pct descending) and losers (ascending)."""
    return {"type": "movers", "step": step, "listed": listed, "gainers": gainers, "losers": losers}


def delisted_frame(symbols: list[str], *, step: int) -> dict[str, Any]:
    """Symbols the market stopped listing; they have left the connection's subscription."""
    return {"type": "delisted", "step": step, "symbols": symbols}


def heartbeat_frame(*, feed: str, step: int, session: dict[str, Any] | None) -> dict[str, Any]:
    """Sent every few seconds and on every change of the feed's state ("live" or "interrupted")."""
    return {"type": "heartbeat", "feed": feed, "step": step, "ts": time.time_ns() // 1_000_000, "session": session}


# One encoder for every frame: json.dumps with arguments builds a new JSONEncoder on every call.
_encoder = json.JSONEncoder(separators=(",", ":"))


def encode(frame: dict[str, Any]) -> str:
    """Compact JSON: every byte is multiplied by every client on every step."""
    return _encoder.encode(frame)


def encode_quote(quote: dict[str, Any]) -> bytes:
    """One quote's JSON, encoded once per step and shared by every frame that carries it."""
    return _encoder.encode(quote).encode()


def quotes_payload(pieces: list[bytes], *, step: int, conflated: bool = False) -> bytes:
    """A quotes frame assembled from encoded quotes (``encode_quote``): byte for byte
    ``encode(quotes_frame(quotes, step=step))``, plus ``"conflated": true`` when asked."""
    tail = b'],"conflated":true}' if conflated else b"]}"
    # One join of parts (not %-formatting, which took half again as long for a 20-quote frame).
    return b"".join((b'{"type":"quotes","step":', str(step).encode(), b',"quotes":[', b",".join(pieces), tail))
