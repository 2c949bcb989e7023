"""The trading session: the schedule, and its way from the market's batches to every client frame.

Pure logic with a hand-moved clock, as in test_hub.py, plus the database read polling uses.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from ticker.hub import EVERYTHING, QuoteHub
from ticker.hub.clock import ManualClock
from ticker.market import selectors, services
from ticker.market.prices import ALWAYS_OPEN, CLOSED, OPEN, Instrument, Market, Schedule, Session, Tick, dt_years
from ticker.market.selectors import Listed
from ticker.wire import protocol

OPEN_SESSION = {"state": "open", "until": 390_000}
CLOSED_SESSION = {"state": "closed", "until": 420_000}


class Outlet:
    deflate = False

    def __init__(self):
        self.written = []
        self.backlogged = False

    def write(self, frame) -> None:
        self.written.append(frame)

    @property
    def frames(self) -> list[dict]:
        return [json.loads(f.text) for f in self.written]


def quote(symbol: str, seq: int) -> dict:
    return {"symbol": symbol, "price": 100.0, "change": 0.0, "change_pct": 0.0, "seq": seq, "ts": 1}


def test_the_default_schedule_is_six_and_a_half_minutes_open_then_thirty_seconds_closed():
    """At speed 60, 6.5 simulated hours open are 390 real seconds, 0.5 closed are 30; cycles count from the epoch."""
    schedule = Schedule.of(open_hours=6.5, closed_hours=0.5, speed=60)
    assert schedule.at(0) == Session(OPEN, 390_000, 0)
    assert schedule.at(389_999) == Session(OPEN, 390_000, 0)
    assert schedule.at(390_000) == Session(CLOSED, 420_000, 0)
    assert schedule.at(420_000) == Session(OPEN, 810_000, 1)


def test_a_benchmark_starts_where_a_session_stays_open_for_its_whole_run():
    """The step-time benchmarks measured a closed market when run near a close: a span that fits in what is left of
    the session starts now; one that does not, or a closed market, starts at the next open."""
    schedule = Schedule.of(open_hours=6.5, closed_hours=0.5, speed=60)
    assert selectors.open_through(schedule, 100_000, 50_000) == 100_000
    assert selectors.open_through(schedule, 350_000, 50_000) == 420_000  # 40 s left of the session: the next one
    assert selectors.open_through(schedule, 400_000, 50_000) == 420_000  # closed: its open
    assert selectors.open_through(schedule, 0, 10_000_000) == 0  # longer than any session: from an open, at least
    assert schedule.at(selectors.open_through(schedule, 389_000, 1_000)).state == OPEN
    assert selectors.open_through(ALWAYS_OPEN, 5, 10**12) == 5


def test_a_closed_market_keeps_the_sessions_change_then_rolls_the_close_at_the_open():
    """At the close every symbol is quoted once more with the session's change; while closed nothing moves;
    the open makes the last price the previous close and starts the session's figures again."""
    schedule = Schedule(open_ms=1_000, closed_ms=1_000)
    tick = Tick("AAA", Decimal("100.00"), Decimal("100.00"), 1, 0)
    market = Market({"AAA": tick}, dt=dt_years(0.25, 60) * 100, seed=3, schedule=schedule)
    controls = {"AAA": Instrument("AAA", 0.5, 0.0)}
    for ts in range(0, 1_000, 100):
        market.step(controls, ts=ts)
    last = market.ticks["AAA"]
    assert last.volume > 0 and last.low <= last.price <= last.high
    (closing,) = market.step(controls, ts=1_000)
    assert closing.seq == last.seq + 1 and closing.price == last.price
    assert closing.prev_close == tick.prev_close and closing.change == last.change != 0
    assert (closing.open, closing.high, closing.low, closing.volume) == (last.open, last.high, last.low, last.volume)
    assert all(market.step(controls, ts=ts) == [] for ts in range(1_100, 2_000, 100))
    (opening,) = market.step(controls, ts=2_000)
    assert opening.open == opening.high == opening.low == opening.price
    assert opening.volume < last.volume and opening.prev_close == last.price


def test_a_seed_replays_sessions_volumes_and_candles_exactly():
    """Two markets with one seed and the same timestamps give identical ticks, session figures included."""
    runs = []
    for _ in range(2):
        tick = Tick("AAA", Decimal("50.00"), Decimal("50.00"), 0, 0)
        market = Market({"AAA": tick}, dt=dt_years(0.25, 60), seed=11, schedule=Schedule(30_000, 10_000))
        runs.append([market.step({"AAA": Instrument("AAA", 0.4, 0.0)}, ts=ts) for ts in range(0, 100_000, 250)])
    assert runs[0] == runs[1]


def test_batches_set_the_session_that_heartbeats_and_snapshots_carry():
    """The hub keeps the latest batch's session; heartbeats and snapshots carry it."""
    hub = QuoteHub(None, clock=ManualClock(now=100.0))
    hub.load(Listed([], OPEN_SESSION))
    outlet = Outlet()
    hub.fanout.attach(outlet)
    hub.on_batch({"type": protocol.BATCH_EVENT, "step": 1, "quotes": [quote("AAA", 1)], "session": CLOSED_SESSION})
    assert hub.store.session == CLOSED_SESSION
    hub.heartbeat("live")
    hub.fanout.subscribe(outlet, ["*"])
    heartbeat, snapshot = [f for f in outlet.frames if f["type"] in ("heartbeat", "snapshot")]
    assert heartbeat["session"] == CLOSED_SESSION and snapshot["session"] == CLOSED_SESSION


def test_a_stored_market_brings_its_session():
    """Loading the stored market (start, or back after an outage) takes the session stored with it."""
    hub = QuoteHub(None, clock=ManualClock(now=100.0))
    hub.load(Listed([], CLOSED_SESSION))
    assert hub.store.session == CLOSED_SESSION
    hub.load(Listed([]))  # a load that did not read the session keeps the one held
    assert hub.store.session == CLOSED_SESSION
    assert hub.store.snapshot(EVERYTHING) == []


@pytest.mark.django_db
def test_polling_reads_the_stored_session_or_derives_it_before_the_market_ran(settings):
    """Before the market ever ran the session comes from the schedule; after, from what the market stored."""
    settings.MARKET_SESSION_OPEN_HOURS, settings.MARKET_SESSION_CLOSED_HOURS = 1.0, 1.0
    assert selectors.stored_session() is None and selectors.session().state in (OPEN, CLOSED)
    market = services.market_open(interval_ms=250, seed=1)
    services.market_step(market=market, ts=61_000)
    assert selectors.listed().session == {"state": "closed", "until": 120_000}
