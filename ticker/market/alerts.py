"""Price alerts in the market: the armed thresholds kept sorted, evaluated and fired inside the step (issue 23).

``AlertBook`` holds, per symbol and condition, the armed alerts' thresholds as a sorted list of ``(value, id)``,
so a step finds the alerts a quote satisfies with one ``bisect`` per symbol moved and condition, then reads the
rows of those alone: the cost grows with the symbols that moved and the alerts that fire, never with the number
armed (docs/benchmarks.md, "Alert evaluation"). It is loaded whole when a market takes the lease
(``AlertBook.load``) and kept current every step, inside the step's transaction, by reading only:

- the alerts created since the last step: ids above a watermark (plus, on PostgreSQL, the ids below it not yet
  seen, for a few seconds: a sequence hands out ids before their transactions commit, in any order);
- the alerts named by a notice on the channel layer (``CHANGED_GROUP``): the API sends one after a re-arm, the
  admin after enabling; a lost notice only delays such an alert until the next takeover or restart.

The book may hold too much (an alert deleted, disabled or fired elsewhere), never too little of what it was told:
every candidate is checked against its row, locked, before it fires (state armed, not disabled, armed at an
earlier step), and one that no longer qualifies leaves the book. Fires are stored in the step's transaction,
after the lease's renewal (``services.market_step``), so a deposed leader fires nothing and a takeover neither
repeats nor skips one.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from ticker.market.prices import Tick
from ticker.models import Alert

ARMED, TRIGGERED = Alert.State.ARMED, Alert.State.TRIGGERED
ABOVE = (Alert.Condition.PRICE_ABOVE, Alert.Condition.CHANGE_PCT_ABOVE)
PRICE_CONDITIONS = (Alert.Condition.PRICE_ABOVE, Alert.Condition.PRICE_BELOW)
# The channel-layer group the leading market listens on for alerts to (re)read: {"type": CHANGED_EVENT, "ids": [...]}.
CHANGED_GROUP = "alerts.changed"
CHANGED_EVENT = "alerts.changed"
# How long an id below the watermark that was never seen is looked for (PostgreSQL's commits out of id order).
GAP_SECONDS = 10.0
# Ids per statement (SQLite's oldest limit on parameters is 999).
CHUNK = 900
_FIELDS = ("id", "stock__symbol", "condition", "value", "state", "disabled")


def alert_json(alert: Alert) -> dict[str, Any]:
    """The one shape of an alert: GET /api/alerts/, the 201 of a new one and the ``alert`` frame (docs/protocol.md)."""
    triggered = alert.state == TRIGGERED
    return {
        "id": alert.pk,
        "symbol": alert.stock.symbol,
        "condition": alert.condition,
        "value": format(Decimal(alert.value).normalize(), "f"),  # 101.5, never 101.5000 (as stored) or 1E+2
        "note": alert.note,
        "state": alert.state,
        "created_at": alert.created_at.isoformat() if alert.created_at else None,
        "triggered_at": alert.triggered_at.isoformat() if triggered and alert.triggered_at else None,
        "price": float(alert.triggered_price) if triggered and alert.triggered_price is not None else None,
        "change_pct": (
            float(alert.triggered_change_pct) if triggered and alert.triggered_change_pct is not None else None
        ),
        "step": alert.triggered_step if triggered else None,
        "read": alert.read,
    }


def satisfied(condition: str, value: Decimal, tick: Tick) -> bool:
    """Whether ``tick`` satisfies an alert: the price (or the change % from the previous close, as the quote's
    ``change_pct``) at or above the value for the ``_above`` conditions, at or below it for ``_below``."""
    figure = tick.price if condition in PRICE_CONDITIONS else Decimal(str(tick.change_pct))
    return figure >= value if condition in ABOVE else figure <= value


@dataclass(frozen=True, slots=True)
class Fire:
    """One alert fired in a step: whose, and the alert as JSON (with the step's figures)."""

    user_id: int
    alert: dict[str, Any]


class AlertBook:
    """The armed alerts' thresholds, sorted per (symbol, condition); see the module's docstring."""

    def __init__(self) -> None:
        self.lists: dict[tuple[str, str], list[tuple[Decimal, int]]] = {}
        self.where: dict[int, tuple[str, str, Decimal]] = {}
        self.watermark = 0
        self.gaps: dict[int, float] = {}
        # Candidates refused only for being armed at this step or later: checked again at the next, moved or not.
        self.recheck: set[int] = set()
        self._noticed: set[int] = set()
        self._lock = threading.Lock()

    # -- keeping it current ---------------------------------------------------

    @classmethod
    def load(cls) -> AlertBook:
        """Every armed, enabled alert (when a market takes the lease)."""
        book = cls()
        rows = Alert.objects.filter(state=ARMED, disabled=False).values_list(*_FIELDS).order_by("id")
        for row in rows.iterator(chunk_size=5000):
            book._place(row)
        book.watermark = Alert.objects.order_by("-id").values_list("id", flat=True).first() or 0
        return book

    def __len__(self) -> int:
        return len(self.where)

    def notice(self, ids) -> None:
        """Alerts to read again at the next step (a re-arm, an enable); called from the notice listener."""
        with self._lock:
            self._noticed.update(int(i) for i in ids)

    def sync(self) -> set[int]:
        """Read what changed since the last step (new ids, gaps, notices); return the ids now armed in the book."""
        with self._lock:
            noticed, self._noticed = self._noticed, set()
        now = time.monotonic()
        self.gaps = {i: t for i, t in self.gaps.items() if now - t < GAP_SECONDS}
        wanted = noticed | set(self.gaps)
        rows = list(Alert.objects.filter(id__gt=self.watermark).values_list(*_FIELDS).order_by("id"))
        rows += self._rows(sorted(wanted))
        seen = {row[0] for row in rows}
        for i in noticed - seen:  # deleted since
            self._remove(i)
        for i in seen:
            self.gaps.pop(i, None)
        if rows and (top := max(seen)) > self.watermark:
            if connection.vendor == "postgresql":
                self.gaps.update(dict.fromkeys(set(range(self.watermark + 1, top)) - seen, now))
            self.watermark = top
        return {row[0] for row in rows if self._place(row)}

    def _rows(self, ids: list[int]) -> list[tuple]:
        found = []
        for start in range(0, len(ids), CHUNK):
            found += Alert.objects.filter(id__in=ids[start : start + CHUNK]).values_list(*_FIELDS)
        return found

    def _place(self, row: tuple) -> bool:
        """Put one row in the book if it is armed and enabled, or take it out; True if it is in."""
        pk, symbol, condition, value, state, disabled = row
        self._remove(pk)
        if state != ARMED or disabled:
            return False
        bisect.insort(self.lists.setdefault((symbol, condition), []), (value, pk))
        self.where[pk] = (symbol, condition, value)
        return True

    def _remove(self, pk: int) -> None:
        if (place := self.where.pop(pk, None)) is None:
            return
        symbol, condition, value = place
        entries = self.lists[(symbol, condition)]
        at = bisect.bisect_left(entries, (value, pk))
        if at < len(entries) and entries[at] == (value, pk):
            del entries[at]
        if not entries:
            del self.lists[(symbol, condition)]

    # -- evaluating -----------------------------------------------------------

    def candidates(self, ticks: list[Tick]) -> dict[int, Tick]:
        """The alerts whose condition these quotes satisfy, by id, with the quote that satisfies each."""
        found: dict[int, Tick] = {}
        for tick in ticks:
            pct = Decimal(str(tick.change_pct))
            for condition in Alert.Condition.values:
                entries = self.lists.get((tick.symbol, condition))
                if not entries:
                    continue
                figure = tick.price if condition in PRICE_CONDITIONS else pct
                if condition in ABOVE:  # value <= figure: a prefix
                    chosen = entries[: bisect.bisect_right(entries, (figure, float("inf")))]
                else:  # value >= figure: a suffix
                    chosen = entries[bisect.bisect_left(entries, (figure, float("-inf"))) :]
                for _value, pk in chosen:
                    found[pk] = tick
        return found

    def new_candidates(self, ids: set[int], quotes: dict[str, Tick]) -> dict[int, Tick]:
        """Alerts just read into the book, checked against their symbol's current quote even if it did not move."""
        found = {}
        for pk in ids:
            symbol, condition, value = self.where[pk]
            if (tick := quotes.get(symbol)) is not None and satisfied(condition, value, tick):
                found[pk] = tick
        return found

    def fire(self, candidates: dict[int, Tick], *, step: int, ts: int) -> list[Fire]:
        """Mark the candidates that still qualify triggered, in this (the step's) transaction; return the fires.

        Rows are locked (PostgreSQL) and checked: armed, enabled, armed at an earlier step. The others are
        read again into the book (deleted, disabled or fired ones leave it). The book forgets the fired ones
        only after the step commits (``forget``)."""
        if not candidates:
            return []
        ids = sorted(candidates)
        alerts: list[Alert] = []
        for start in range(0, len(ids), CHUNK):
            query = Alert.objects.select_for_update(of=("self",)).select_related("stock")
            alerts += query.filter(
                id__in=ids[start : start + CHUNK], state=ARMED, disabled=False, armed_step__lt=step
            ).order_by("id")
        if stale := sorted(set(ids) - {a.pk for a in alerts}):
            rows = self._rows(stale)
            for row in rows:
                self._place(row)
            for pk in set(stale) - {row[0] for row in rows}:  # deleted
                self._remove(pk)
            self.recheck = {pk for pk in stale if pk in self.where}
        at = datetime.fromtimestamp(ts / 1000, tz=UTC)
        by_symbol: dict[str, list[Alert]] = {}
        for alert in alerts:
            tick = candidates[alert.pk]
            alert.state, alert.triggered_at, alert.triggered_step, alert.read = TRIGGERED, at, step, False
            alert.triggered_price = tick.price
            alert.triggered_change_pct = Decimal(str(tick.change_pct))
            by_symbol.setdefault(tick.symbol, []).append(alert)
        for group in by_symbol.values():
            first = group[0]
            Alert.objects.filter(id__in=[a.pk for a in group]).update(
                state=TRIGGERED,
                triggered_at=at,
                triggered_step=step,
                triggered_price=first.triggered_price,
                triggered_change_pct=first.triggered_change_pct,
                read=False,
            )
        return [Fire(alert.user_id, alert_json(alert)) for alert in alerts]

    def forget(self, fires: list[Fire]) -> None:
        """Take fired alerts out of the book (after their step committed)."""
        for fire in fires:
            self._remove(fire.alert["id"])


def evaluate(book: AlertBook, *, changed: list[Tick], quotes: dict[str, Tick], step: int, ts: int) -> list[Fire]:
    """The step's alert work, inside its transaction: read what changed, find the candidates, fire."""
    fresh, book.recheck = book.sync() | book.recheck, set()
    fresh = {pk for pk in fresh if pk in book.where}
    candidates = book.candidates(changed)
    for pk, tick in book.new_candidates(fresh - set(candidates), quotes).items():
        candidates.setdefault(pk, tick)
    return book.fire(candidates, step=step, ts=ts)
