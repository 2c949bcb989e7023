"""A step's alert work (issue 23), inside its transaction: the book's candidates fired in the database, and their
frames written (ticker/market/alerts.py keeps the book; ticker/market/services.py calls ``evaluate``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

from ticker.market import alert_rows
from ticker.market.alert_json import Fire, fired_frames, iso
from ticker.market.alerts import AlertBook
from ticker.market.prices import Tick


def evaluate(book: AlertBook, *, changed: list[Tick], quotes: dict[str, Tick], step: int, ts: int) -> list[Fire]:
    """Read what changed, find the candidates, fire. The seconds of each part go to ``book.timings`` (read, find,
    fire) for the benchmark (``manage.py alerts_steptime``)."""
    started = time.perf_counter()
    fresh, book.recheck, book.fresh = book.sync() | book.recheck | book.fresh, set(), set()
    fresh = {pk for pk in fresh if pk in book.where}
    read = time.perf_counter()
    candidates = book.candidates(changed)
    for pk, tick in book.new_candidates(fresh - set(candidates), quotes).items():
        candidates.setdefault(pk, tick)
    found = time.perf_counter()
    fires = fire(book, candidates, step=step, ts=ts)
    book.timings = (read - started, found - read, time.perf_counter() - found)
    return fires


def fire(book: AlertBook, candidates: dict[int, Tick], *, step: int, ts: int) -> list[Fire]:
    """Mark the candidates that still qualify triggered, in this (the step's) transaction; return the fires.

    Rows are locked (PostgreSQL) and checked: armed, enabled, armed at an earlier step. The others are read
    again into the book (``AlertBook.reread``). The book forgets the fired ones only after the step commits
    (``AlertBook.forget``)."""
    if not candidates:
        return []
    ids = sorted(candidates)
    at = datetime.fromtimestamp(ts / 1000, tz=UTC)
    quoted, make = fired_frames(step=step, ts=ts, triggered_at=iso(at))
    # By the quote's identity, once for all the alerts it fires: its price, change % and part of their frames.
    quotes: dict[int, tuple] = {}
    for tick in candidates.values():
        if id(tick) not in quotes:
            pct = Decimal(str(tick.change_pct))
            quotes[id(tick)] = (tick.price, pct, quoted(tick.symbol, tick.price, pct))
    rows = alert_rows.fire([(pk, *quotes[id(candidates[pk])][:2]) for pk in ids], step=step, at=at)
    if stale := sorted(set(ids) - {row[0] for row in rows}):
        book.reread(stale)
    return [
        Fire(user_id, pk, make(pk, condition, value, note, created_at, quotes[id(candidates[pk])][2]))
        for pk, user_id, condition, value, note, created_at in rows
    ]
