"""Price alerts in the market: the armed thresholds kept sorted, evaluated and fired inside the step (issue 23).

``AlertBook`` holds, per symbol and condition, the armed alerts' thresholds as a sorted list of ``(value, id)``,
and per symbol the price range in which a quote fires nothing (its gate): the market tests each new price against
its symbol's gate where it makes the price (``watch``, ``Market.step``), the book bisects the lists only past it
and reads the rows of the candidates alone, so the cost grows with the symbols that moved and the alerts that
fire, never with the number armed (docs/benchmarks.md, "Alert evaluation"). It is loaded whole when a market
takes the lease (``AlertBook.load``) and kept current every step, inside the step's transaction, by reading only:

- the alerts created since the last step: ids above a watermark (plus, on PostgreSQL, the ids below it not yet
  seen, for a few seconds: a sequence hands out ids before their transactions commit, in any order);
- the alerts named by a notice on the channel layer (``CHANGED_GROUP``): the API sends one after a re-arm, the
  admin after enabling; a lost notice is found by the reconcile every ``RECONCILE_EVERY_S``.

The book may hold too much (an alert deleted, disabled or fired elsewhere), never too little of what it was told:
every candidate is checked against its row before it fires (armed, enabled, armed at an earlier step), and one
that no longer qualifies leaves the book. Fires are stored in the step's transaction, after the lease's renewal
(``services.market_step``), so a deposed leader fires nothing and a takeover neither repeats nor skips one.
"""

from __future__ import annotations

import bisect
import threading
import time
from array import array
from decimal import Decimal

from django.db import connection

from ticker.market import alert_rows
from ticker.market.alert_json import Fire
from ticker.market.prices import Tick
from ticker.models import Alert

ARMED, TRIGGERED = Alert.State.ARMED, Alert.State.TRIGGERED
# The book's order of the conditions (Alert.Condition.values builds a new list at each call).
CONDITIONS = ("price_above", "price_below", "change_pct_above", "change_pct_below")
INF = float("inf")
_LOWEST, _HIGHEST, _MARGIN = Decimal("-Infinity"), Decimal("Infinity"), Decimal("0.01")
ABOVE = (Alert.Condition.PRICE_ABOVE, Alert.Condition.CHANGE_PCT_ABOVE)
PRICE_CONDITIONS = (Alert.Condition.PRICE_ABOVE, Alert.Condition.PRICE_BELOW)
# The channel-layer group the leading market listens on for alerts to (re)read: {"type": CHANGED_EVENT, "ids": [...]};
# and how often it reads every armed alert's id, away from the step, for a notice lost while Redis was away.
CHANGED_GROUP = CHANGED_EVENT = "alerts.changed"
RECONCILE_EVERY_S = 10.0
# Ids below the watermark never seen (PostgreSQL commits out of id order): looked for so long, so far below the top.
GAP_SECONDS, GAP_MAX = 10.0, 1000


def satisfied(condition: str, value: Decimal, tick: Tick) -> bool:
    """Whether ``tick`` satisfies an alert: the price (or the change % from the previous close, as the quote's
    ``change_pct``) at or above the value for the ``_above`` conditions, at or below it for ``_below``."""
    figure = tick.price if condition in PRICE_CONDITIONS else Decimal(str(tick.change_pct))
    return figure >= value if condition in ABOVE else figure <= value


class AlertBook:
    """The armed alerts' thresholds, sorted per symbol and condition; see the module's docstring.

    Thresholds are floats (a value has at most 4 decimals and 10 digits, a price 2 decimals, a change % is the
    float of a 2-decimal figure: float conversion keeps their order, equal numbers equal). Per symbol the book
    keeps the four bounds that fire anything (the lowest ``_above``, the highest ``_below``) and from them its gate."""

    def __init__(self) -> None:
        self.lists: dict[str, tuple[list[tuple[float, int]], ...]] = {}
        self.bounds: dict[str, tuple[float, float, float, float]] = {}
        # Per symbol: (previous close, lowest, highest): a price strictly between fires nothing (``_gate``).
        self.gates: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
        self.where: dict[int, tuple[str, int, float]] = {}
        self.watermark = 0
        self.gaps: dict[int, float] = {}
        # Candidates refused only for being armed at this step or later: checked again at the next, moved or not.
        # ``fresh``: alerts read ahead of a step (``prepare``), checked at it; ``fired``: the last step's fires, to
        # leave the book at the next read (``forget``).
        self.recheck: set[int] = set()
        self.fresh: set[int] = set()
        self.fired: list[Fire] = []
        # The gates as floats by the market's order of symbols, for its price loop (``watch``); ``_slot`` by symbol.
        self.low, self.high = array("d"), array("d")
        self._order: list[str] = []
        self._slot: dict[str, int] = {}
        self.timings = (0.0, 0.0, 0.0)
        self._noticed: set[int] = set()
        self._armed: set[int] | None = None  # the latest reconcile's ids, for the next ``sync``
        self._lock = threading.Lock()

    # -- keeping it current ---------------------------------------------------

    @classmethod
    def load(cls) -> AlertBook:
        """Every armed, enabled alert (when a market takes the lease)."""
        book = cls()
        rows = Alert.objects.filter(state=ARMED, disabled=False).values_list(*alert_rows.BOOK_FIELDS).order_by("id")
        for row in rows.iterator(chunk_size=5000):
            book._place(row, bound=False)
        for symbol in book.lists:
            book._bound(symbol)
        book.watermark = Alert.objects.order_by("-id").values_list("id", flat=True).first() or 0
        return book

    def __len__(self) -> int:
        return len(self.where)

    def notice(self, ids) -> None:
        """Alerts to read again at the next step (a re-arm, an enable); called from the notice listener."""
        with self._lock:
            self._noticed.update(int(i) for i in ids)

    def reconcile(self, armed: set[int]) -> None:
        """Every armed, enabled alert's id (``armed_ids``, read away from the step): the next ``sync`` reads the
        ones the book lacks below its watermark, a re-arm or an enable whose notice was lost."""
        with self._lock:
            self._armed = armed

    def prepare(self) -> None:
        """Between steps (run_market, before the next ``ts``): the last step's fires leave the book and new alerts
        are read, so the step reads only what came in meanwhile (2,000 new alerts: ~10 ms on PostgreSQL)."""
        self.fresh |= self.sync()

    def sync(self) -> set[int]:
        """Read what changed since the last step (new ids, gaps, notices); return the ids now armed in the book."""
        if self.fired:
            fired, self.fired = self.fired, []
            self._rebound({self._remove(fire.id, bound=False) for fire in fired})
        with self._lock:
            noticed, self._noticed = self._noticed, set()
            armed, self._armed = self._armed, None
        if armed is not None:
            noticed |= {i for i in armed - self.where.keys() if i <= self.watermark}
        now = time.monotonic()
        if self.gaps:
            self.gaps = {i: t for i, t in self.gaps.items() if now - t < GAP_SECONDS}
        try:
            rows = alert_rows.after(self.watermark)
            if wanted := noticed | set(self.gaps):
                rows += alert_rows.by_ids(sorted(wanted))
        except Exception:
            with self._lock:  # read again at the next sync: a failed read loses no notice (prepare goes on)
                self._noticed |= noticed
                self._armed = armed if self._armed is None else self._armed
            raise
        seen = {row[0] for row in rows}
        touched = {self._remove(i, bound=False) for i in noticed - seen}  # deleted since
        for i in seen:
            self.gaps.pop(i, None)
        if rows and (top := max(seen)) > self.watermark:
            if connection.vendor == "postgresql":  # the ids just below the top (a jump, say a setval, is not a gap)
                missing = set(range(max(self.watermark + 1, top - GAP_MAX), top)) - seen
                self.gaps.update(dict.fromkeys(missing, now))
            self.watermark = top
        placed = {row[0] for row in rows if self._place(row, bound=False)}
        self._rebound(touched | {row[1] for row in rows})
        return placed

    def _place(self, row: tuple, *, bound: bool = True) -> bool:
        """Put one row in the book if it is armed and enabled, or take it out; True if it is in (see ``_rebound``)."""
        pk, symbol, condition, value, state, disabled = row
        self._remove(pk, bound=bound)
        if state != ARMED or disabled:
            return False
        kind, value = CONDITIONS.index(condition), float(value)
        lists = self.lists.get(symbol)
        if lists is None:
            lists = self.lists[symbol] = ([], [], [], [])
        bisect.insort(lists[kind], (value, pk))
        self.where[pk] = (symbol, kind, value)
        if bound:
            self._bound(symbol)
        return True

    def _remove(self, pk: int, *, bound: bool = True) -> str | None:
        if (place := self.where.pop(pk, None)) is None:
            return None
        symbol, kind, value = place
        entries = self.lists[symbol][kind]
        at = bisect.bisect_left(entries, (value, pk))
        if at < len(entries) and entries[at] == (value, pk):
            del entries[at]
        if bound:
            self._bound(symbol)
        return symbol

    def _rebound(self, symbols) -> None:
        """Bounds once a symbol after rows placed or removed with ``bound=False`` (2,000 fires of a symbol: ~6 ms)."""
        for symbol in symbols:
            if symbol in self.lists:
                self._bound(symbol)

    def _bound(self, symbol: str) -> None:
        """The symbol's four bounds: a quote fires something only past one of them."""
        self.gates.pop(symbol, None)
        above, below, pct_above, pct_below = self.lists[symbol]
        if not (above or below or pct_above or pct_below):
            del self.lists[symbol]
            self.bounds.pop(symbol, None)
            self._floats(symbol, -INF, INF)  # nothing to fire: never looked at
            return
        self._floats(symbol, INF, -INF)  # its gate to be worked out again: looked at whatever the price
        self.bounds[symbol] = (
            above[0][0] if above else INF,
            below[-1][0] if below else -INF,
            pct_above[0][0] if pct_above else INF,
            pct_below[-1][0] if pct_below else -INF,
        )

    # -- evaluating -----------------------------------------------------------

    def watch(self, order: list[str]) -> tuple[array, array]:
        """The gates as floats for the market's price loop (``Market.step(watch=...)``), by position in ``order``,
        the step's symbols: a new price strictly between ``low`` and ``high`` fires nothing. Each is the gate a
        cent inside, for the rounding the price has still to go through (at most half a cent); a symbol whose gate
        is not worked out yet has an empty range (``low`` infinite), one without alerts the whole line."""
        if order != self._order:  # a listing or a delisting (or the first step): every slot moves
            self._order, self._slot = order, {symbol: i for i, symbol in enumerate(order)}
            self.low, self.high = array("d", [-INF]) * len(order), array("d", [INF]) * len(order)
            for symbol in self.lists:  # from the gates worked out; an empty range for the others
                gate = self.gates.get(symbol)
                self._floats(symbol, *(gate[1:] if gate else (INF, -INF)), inside=gate is not None)
        return self.low, self.high

    def _floats(self, symbol: str, low, high, *, inside: bool = False) -> None:
        """Set ``symbol``'s slot (if the market trades it); ``inside``: a decimal gate, taken a cent inside."""
        if (i := self._slot.get(symbol)) is not None:
            self.low[i], self.high[i] = (float(low) + 0.01, float(high) - 0.01) if inside else (low, high)

    def candidates(self, ticks: list[Tick]) -> dict[int, Tick]:
        """The alerts whose condition these quotes satisfy, by id, with the quote that satisfies each."""
        found: dict[int, Tick] = {}
        gate_of, bounds = self.gates.get, self.bounds
        for tick in ticks:
            gate, close = gate_of(tick.symbol), tick.prev_close
            # The close is the same object from step to step (it changes at a session's open): identity first,
            # as most of this loop's cost is per quote (py-spy: ~half of it on these lines, 3,652 quotes a step).
            if gate is None or gate[0] is not close:
                if tick.symbol not in bounds:
                    continue
                gate = self._gate(tick.symbol, close) if gate is None or gate[0] != close else (close, *gate[1:])
                self.gates[tick.symbol] = gate
            if gate[1] < tick.price < gate[2]:
                continue
            self._past_gate(tick, gate, found)
        return found

    def _past_gate(self, tick: Tick, gate: tuple[Decimal, Decimal, Decimal], found: dict[int, Tick]) -> None:
        """A quote at or past its gate: the alerts it fires go to ``found``. Only the side it crossed is looked at,
        and its change % (~4 us of decimal arithmetic) worked out only if a change % bound on that side is set."""
        above, below, pct_above, pct_below = self.lists[tick.symbol]
        bound_above, bound_below, bound_pct_above, bound_pct_below = self.bounds[tick.symbol]
        price, pct = float(tick.price), None
        if tick.price >= gate[2]:  # value <= figure: a prefix of each list
            if price >= bound_above:
                for _value, pk in above[: bisect.bisect_right(above, (price, INF))]:
                    found[pk] = tick
            if bound_pct_above < INF and (pct := tick.change_pct) >= bound_pct_above:
                for _value, pk in pct_above[: bisect.bisect_right(pct_above, (pct, INF))]:
                    found[pk] = tick
        if tick.price <= gate[1]:  # value >= figure: a suffix (both sides when the bounds overlap)
            if price <= bound_below:
                for _value, pk in below[bisect.bisect_left(below, (price, -INF)) :]:
                    found[pk] = tick
            if bound_pct_below > -INF:
                if pct is None:
                    pct = tick.change_pct
                if pct <= bound_pct_below:
                    for _value, pk in pct_below[bisect.bisect_left(pct_below, (pct, -INF)) :]:
                        found[pk] = tick

    def _gate(self, symbol: str, close: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        """The prices between which a quote of ``symbol`` fires nothing, with this previous close: its four bounds,
        the change % ones as prices (a hundredth of a percent inside them, for the quote's rounding). A quote
        compared with them as decimals costs ~0.1 us; its change % costs ~2 us."""
        above, below, pct_above, pct_below = self.bounds[symbol]
        # str(): the value as it was stored (Decimal(10.3) is the float's 10.30000000000000071..., above 10.30)
        lo, hi = Decimal(str(below)) if below > -INF else _LOWEST, Decimal(str(above)) if above < INF else _HIGHEST
        if close > 0:
            if pct_above < INF:
                hi = min(hi, close * (1 + (Decimal(str(pct_above)) - _MARGIN) / 100))
            if pct_below > -INF:
                lo = max(lo, close * (1 + (Decimal(str(pct_below)) + _MARGIN) / 100))
        elif pct_above < INF or pct_below > -INF:  # no close (never, in practice): check every quote
            lo, hi = _HIGHEST, _LOWEST
        gate = self.gates[symbol] = (close, lo, hi)
        self._floats(symbol, lo, hi, inside=True)
        return gate

    def new_candidates(self, ids: set[int], quotes: dict[str, Tick]) -> dict[int, Tick]:
        """Alerts just read into the book, checked against their symbol's current quote even if it did not move."""
        found = {}
        for pk in ids:
            symbol, kind, value = self.where[pk]
            if (tick := quotes.get(symbol)) is not None and satisfied(CONDITIONS[kind], Decimal(str(value)), tick):
                found[pk] = tick
        return found

    def reread(self, ids: list[int]) -> None:
        """Candidates that did not fire (``alert_fire.fire``: deleted, disabled, fired elsewhere, armed at this
        step): read again; deleted ones leave the book, and those still armed are checked at the next step."""
        found = alert_rows.by_ids(ids)
        for row in found:
            self._place(row)
        for pk in set(ids) - {row[0] for row in found}:
            self._remove(pk)
        self.recheck = {pk for pk in ids if pk in self.where}

    def forget_gates(self) -> None:
        """After a step that did not commit: every gate is worked out again (its close may be one rolled back)."""
        self.gates.clear()
        self._order = []

    def forget(self, fires: list[Fire]) -> None:
        """Fired alerts (their step committed) leave the book at its next read (``sync``), after publishing."""
        self.fired += fires
