"""The hub's pieces on their own: the store, interests, fan-out with rate caps and backlogs, heartbeats.

Pure logic with a hand-moved clock (ticker.hub.clock.ManualClock): no sleeps, no processes.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest

from ticker.hub import EVERYTHING, NOTHING, FeedUnavailable, Interest, QuoteHub, close_hub, get_hub
from ticker.hub.clock import ManualClock
from ticker.hub.fanout import Fanout
from ticker.hub.follower import INTERRUPTED, LIVE
from ticker.hub.heartbeats import Heartbeats
from ticker.hub.store import QuoteStore
from ticker.market.selectors import Listed
from ticker.runtime import gc_schedule


class Outlet:
    """Stands in for a server outlet (ticker.hub.outlet.Outlet): keeps every frame written to it."""

    deflate = False

    def __init__(self):
        self.written = []
        self.backlogged = False

    def write(self, frame) -> None:
        self.written.append(frame)

    @property
    def frames(self) -> list[dict]:
        return [json.loads(f.text) for f in self.written]

    def seqs(self) -> list[tuple[str, list[int]]]:
        return [(f["type"], [q["seq"] for q in f["quotes"]]) for f in self.frames]


def quote(symbol: str, seq: int) -> dict:
    return {"symbol": symbol, "price": 100.0 + seq, "change": 0.0, "change_pct": 0.0, "seq": seq, "ts": 1}


def fanout(*quotes: dict) -> tuple[Fanout, ManualClock]:
    store, clock = QuoteStore(), ManualClock(now=100.0)
    store.apply(1, list(quotes))
    return Fanout(store, clock), clock


def step(f: Fanout, step: int, *quotes: dict) -> None:
    """One market step as the hub hands it on (QuoteHub.on_batch)."""
    f.quotes(step, f.store.apply(step, list(quotes)), f.store.previous)


def test_an_interest_in_everything_but_one_symbol_still_wants_symbols_listed_later():
    """Unsubscribing one symbol from ["*"] keeps every other symbol, those listed later too."""
    interest = EVERYTHING.minus(["BBB"])
    assert interest.wants("AAA") and not interest.wants("BBB") and interest.wants("NEWCO")
    assert interest.plus(["BBB"]) == EVERYTHING
    assert NOTHING.plus(["AAA"]).minus(["AAA"]).empty


def test_the_store_keeps_only_newer_quotes_and_forgets_delisted_ones():
    store = QuoteStore()
    assert store.apply(1, [quote("AAA", 1), quote("BBB", 1)]) == [quote("AAA", 1), quote("BBB", 1)]
    assert store.apply(2, [quote("AAA", 1), quote("BBB", 2)]) == [quote("BBB", 2)]  # AAA seq 1 is a duplicate
    assert store.changed_since(1, EVERYTHING) == [quote("BBB", 2)]
    store.delist(["AAA"])
    assert not store.known("AAA") and store.snapshot(EVERYTHING) == [quote("BBB", 2)]


def test_each_step_is_encoded_once_for_every_connection_with_the_same_interest():
    f, _ = fanout(quote("AAA", 1), quote("BBB", 1))
    first, second, only_b = Outlet(), Outlet(), Outlet()
    f.attach(first, EVERYTHING)
    f.attach(second, EVERYTHING)
    f.attach(only_b, Interest(False, frozenset({"BBB"})))
    step(f, 2, quote("AAA", 2), quote("BBB", 2))
    step(f, 3, quote("AAA", 3))
    assert first.seqs() == [("quotes", [2, 2]), ("quotes", [3])]
    assert [id(frame) for frame in first.written] == [id(frame) for frame in second.written]
    assert only_b.seqs() == [("quotes", [2])]  # nothing at all for step 3


def test_a_connection_that_stops_reading_gets_a_snapshot_not_a_backlog_and_holds_up_no_one():
    f, _ = fanout(quote("AAA", 1))
    slow, other = Outlet(), Outlet()
    f.attach(slow, EVERYTHING)
    f.attach(other, EVERYTHING)
    slow.backlogged = True
    step(f, 2, quote("AAA", 2))
    step(f, 3, quote("AAA", 3))
    slow.backlogged = False
    step(f, 4, quote("AAA", 4))
    assert slow.seqs() == [("snapshot", [4])]
    assert other.seqs() == [("quotes", [2]), ("quotes", [3]), ("quotes", [4])]


def test_max_rate_conflates_and_flushes_when_the_interval_ends():
    """At most one frame per interval; held quotes go out when it ends, marked conflated."""
    f, clock = fanout(quote("AAA", 1), quote("BBB", 1))
    capped = Outlet()
    f.attach(capped, EVERYTHING)
    f.set_max_rate(capped, 2)  # one frame per 0.5 s
    step(f, 2, quote("AAA", 2))  # goes out at once
    step(f, 3, quote("AAA", 3), quote("BBB", 3))  # held
    step(f, 4, quote("AAA", 4))  # held: AAA conflated
    assert capped.seqs() == [("quotes", [2])]
    clock.advance(0.5)
    assert capped.seqs() == [("quotes", [2]), ("quotes", [4, 3])]
    assert capped.frames[-1]["conflated"] is True


def test_a_capped_connection_gets_nothing_older_than_a_fresh_snapshot():
    """Quotes held by max_rate before an outage are dropped once the snapshot after it has gone out."""
    f, clock = fanout(quote("AAA", 1))
    capped = Outlet()
    f.attach(capped, EVERYTHING)
    f.set_max_rate(capped, 2)
    step(f, 2, quote("AAA", 2))  # goes out at once
    step(f, 3, quote("AAA", 3))  # held until the interval ends
    f.store.apply(5, [quote("AAA", 5)])  # back after an outage: AAA is at seq 5
    f.resnapshot()
    clock.advance(1.0)  # past the interval, when a held frame would be flushed
    assert capped.seqs() == [("quotes", [2]), ("snapshot", [5])]


def test_lifting_the_cap_sends_what_it_held_at_once():
    f, _ = fanout(quote("AAA", 1))
    capped = Outlet()
    f.attach(capped, EVERYTHING)
    f.set_max_rate(capped, 1)
    step(f, 2, quote("AAA", 2))
    step(f, 3, quote("AAA", 3))
    f.set_max_rate(capped, None)
    assert capped.seqs() == [("quotes", [2]), ("quotes", [3])]


def test_a_connection_whose_outlet_breaks_is_dropped_and_the_others_still_get_the_step():
    f, _ = fanout(quote("AAA", 1))
    broken, fine = Outlet(), Outlet()
    broken.write = lambda frame: (_ for _ in ()).throw(OSError("gone"))
    f.attach(broken, EVERYTHING)
    f.attach(fine, EVERYTHING)
    step(f, 2, quote("AAA", 2))
    assert len(f) == 1 and fine.seqs() == [("quotes", [2])]


def test_heartbeats_are_periodic_and_announce_a_change_of_state_at_once():
    beats = Heartbeats(5.0, started_at=0.0, announced=LIVE)
    assert beats.due(LIVE, 4.9) is None
    assert beats.due(LIVE, 5.0).changed is False
    change = beats.due(INTERRUPTED, 5.5)
    assert change.state == INTERRUPTED and change.changed
    assert beats.due(INTERRUPTED, 6.0) is None


@pytest.mark.asyncio
async def test_a_hub_that_gets_no_snapshot_says_so_instead_of_waiting_forever():
    """Redis and the database unreachable: waiting for the hub ends with FeedUnavailable after the bound."""
    from ticker.hub import FeedUnavailable

    async def unreachable() -> Listed:
        raise OSError("connection refused")

    hub = QuoteHub(None, load=unreachable)
    with pytest.raises(FeedUnavailable):
        await hub.ready(0.3)
    await hub.close()


@pytest.mark.asyncio
async def test_a_feed_that_never_sent_a_batch_is_reported_silent_since_the_hub_started(caplog):
    """The warning names the time since this hub began to follow, not the machine's uptime (a process that had
    just started said "no batch for 3786.2 s": the loop's clock minus a last batch at 0)."""

    async def unreachable() -> Listed:
        raise OSError("connection refused")

    clock = ManualClock(now=5000.0)  # as the loop's clock on a machine up for 83 minutes
    hub = QuoteHub(None, load=unreachable, clock=clock)
    with pytest.raises(FeedUnavailable):
        await hub.ready(0.1)
    logger = logging.getLogger("ticker.hub")  # the site's loggers do not propagate to pytest's root handler
    logger.addHandler(caplog.handler)
    try:
        clock.advance(7.0)
        for _ in range(100):  # the heartbeat watch looks every 0.5 s: within a few
            if "quote feed interrupted: no batch" in caplog.text:
                break
            await asyncio.sleep(0.1)
    finally:
        logger.removeHandler(caplog.handler)
        await hub.close()
    assert "quote feed interrupted: no batch for 7.0 s, none yet since start" in caplog.text, caplog.text


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_process_hub_runs_full_collections_until_it_stops(market):
    """While a web process's hub runs, Python's own full collections are off; closing it gives them back."""
    before = gc.get_threshold()
    hub = await get_hub()
    assert gc.get_threshold()[2] == gc_schedule.AUTOMATIC_FULL_OFF
    assert hub.collections.active
    await close_hub()
    assert gc.get_threshold() == before


def test_time_the_process_itself_was_busy_does_not_count_as_a_silent_feed():
    """A loop that could not receive for 4 s (a burst of connects) does not call a live feed interrupted."""
    from ticker.hub.follower import FeedFollower

    follower = FeedFollower(None, stale_after_s=3.0, load=None, on_load=None, on_batch=None)
    follower.connected, follower.last_batch_at = True, 10.0
    assert follower.state(14.0) == INTERRUPTED
    follower.excuse(4.0, now=14.0)
    assert follower.state(14.0) == LIVE


def test_an_excuse_never_moves_the_last_batch_past_now():
    """A batch handled during the stall already counts; the excuse must not postpone noticing a dead market."""
    from ticker.hub.follower import FeedFollower

    follower = FeedFollower(None, stale_after_s=3.0, load=None, on_load=None, on_batch=None)
    follower.connected, follower.last_batch_at = True, 104.4  # a batch near the end of a 100.0-104.5 stall
    follower.excuse(4.0, now=104.5)
    assert follower.last_batch_at == 104.5
    assert follower.state(107.6) == INTERRUPTED


# -- personal watchlists: frames assembled from quotes encoded once per step ---------------------------


def mine(*symbols: str) -> Interest:
    return Interest(False, frozenset(symbols))


def test_a_personal_frame_holds_exactly_the_clients_changed_symbols_in_symbol_order():
    """Each watchlist gets just its symbols that moved, byte for byte the frame the protocol encodes."""
    from ticker.wire import protocol

    f, _ = fanout(*(quote(s, 1) for s in "ABCDE"))
    ace, bd, everyone = Outlet(), Outlet(), Outlet()
    f.attach(ace, mine("E", "C", "A"))
    f.attach(bd, mine("B", "D"))
    f.attach(everyone, EVERYTHING)
    changed = [quote("E", 2), quote("A", 2), quote("D", 2)]  # out of order, as a resent batch may be
    step(f, 2, *changed)
    assert [[q["symbol"] for q in fr["quotes"]] for fr in ace.frames] == [["A", "E"]]
    assert [[q["symbol"] for q in fr["quotes"]] for fr in bd.frames] == [["D"]]
    assert everyone.written[0].text == protocol.encode(
        protocol.quotes_frame([quote("A", 2), quote("D", 2), quote("E", 2)], step=2)
    )
    step(f, 3, quote("B", 2))
    assert len(ace.written) == 1  # none of its symbols moved: no frame at all
    assert bd.seqs() == [("quotes", [2]), ("quotes", [2])]


def test_many_watchlists_in_one_step_each_get_exactly_their_changed_symbols():
    """Past Batch.LAZY_WATCHLISTS watchlists a step encodes every quote and picks by look-up: same frames."""
    from ticker.hub.batch import Batch
    from ticker.wire import protocol

    symbols = [f"S{n:03}" for n in range(60)]
    f, _ = fanout(*(quote(s, 1) for s in symbols))
    lists = [symbols[n % 55 : n % 55 + 5] for n in range(Batch.LAZY_WATCHLISTS * 2)]
    outlets = [Outlet() for _ in lists]
    for outlet, watched in zip(outlets, lists, strict=True):
        f.attach(outlet, mine(*watched))
    moved = [quote(s, 2) for s in symbols if int(s[1:]) % 3]  # every third symbol does not move
    step(f, 2, *moved)
    for outlet, watched in zip(outlets, lists, strict=True):
        expected = [q for q in moved if q["symbol"] in watched]
        assert [fr.text for fr in outlet.written] == [protocol.encode(protocol.quotes_frame(expected, step=2))]


def test_watchlists_continue_seq_from_their_snapshot_and_identical_ones_share_a_frame():
    """Snapshot then continue, seq +1 per step; two clients on the same symbols get the same frame object."""
    f, _ = fanout(quote("AAA", 1), quote("BBB", 1), quote("CCC", 1))
    first, second = Outlet(), Outlet()
    f.attach(first)
    f.attach(second)
    step(f, 2, quote("AAA", 2), quote("CCC", 2))
    f.subscribe(first, ["CCC", "AAA"])
    f.subscribe(second, ["AAA", "CCC"])
    for n in range(3, 6):
        step(f, n, quote("AAA", n), quote("BBB", n), quote("CCC", n))
    assert first.seqs() == [("snapshot", [2, 2]), ("quotes", [3, 3]), ("quotes", [4, 4]), ("quotes", [5, 5])]
    assert [id(fr) for fr in first.written[1:]] == [id(fr) for fr in second.written[1:]]
    assert [fr["step"] for fr in first.frames] == [2, 3, 4, 5]


def test_a_capped_watchlist_conflates_only_its_own_symbols():
    """max_rate on a watchlist: one frame per interval with the latest of its symbols, flagged conflated."""
    f, clock = fanout(quote("AAA", 1), quote("BBB", 1), quote("CCC", 1))
    capped = Outlet()
    f.attach(capped, mine("AAA", "CCC"))
    f.set_max_rate(capped, 2)
    step(f, 2, quote("AAA", 2), quote("BBB", 2))  # at once
    step(f, 3, quote("AAA", 3), quote("BBB", 3), quote("CCC", 2))  # held
    step(f, 4, quote("AAA", 4))  # held: AAA folded
    assert capped.seqs() == [("quotes", [2])]
    clock.advance(0.5)
    assert capped.seqs() == [("quotes", [2]), ("quotes", [4, 2])]
    assert capped.frames[-1]["conflated"] is True and capped.frames[0].get("conflated") is None


def test_a_watchlist_that_stops_reading_gets_a_snapshot_of_its_symbols_then_continues():
    """Backlogged: held back; reading again: a snapshot of its own symbols, then quotes continue from it."""
    f, _ = fanout(quote("AAA", 1), quote("BBB", 1))
    slow = Outlet()
    f.attach(slow, mine("BBB"))
    slow.backlogged = True
    step(f, 2, quote("AAA", 2), quote("BBB", 2))
    slow.backlogged = False
    step(f, 3, quote("AAA", 3), quote("BBB", 3))
    step(f, 4, quote("BBB", 4))
    assert slow.seqs() == [("snapshot", [3]), ("quotes", [4])]


# -- movers and delistings ---------------------------------------------------------------------------------


def moving(symbol: str, seq: int, pct: float) -> dict:
    return {**quote(symbol, seq), "change_pct": pct}


def test_movers_come_at_once_then_at_most_once_a_second_while_they_change():
    """An immediate frame; steps within the second wait for it; nothing when the top does not change."""
    f, clock = fanout(moving("AAA", 1, 1.0), moving("BBB", 1, -2.0), moving("CCC", 1, 0.5))
    watcher = Outlet()
    f.attach(watcher)
    f.follow_movers(watcher, 2)
    first = watcher.frames[0]
    assert first["type"] == "movers" and first["listed"] == 3
    assert [q["symbol"] for q in first["gainers"]] == ["AAA", "CCC"]
    assert [q["symbol"] for q in first["losers"]] == ["BBB", "CCC"]
    step(f, 2, moving("CCC", 2, 3.0))
    clock.advance(0.5)
    assert len(watcher.written) == 1  # the second is not up yet
    clock.advance(0.5)
    assert [q["symbol"] for q in watcher.frames[-1]["gainers"]] == ["CCC", "AAA"] and len(watcher.written) == 2
    step(f, 3, moving("BBB", 1, -2.0))  # a duplicate: nothing fresh, nothing sent
    clock.advance(5)
    assert len(watcher.written) == 2


def test_movers_stop_at_count_zero_and_are_not_worked_out_for_nobody():
    f, clock = fanout(moving("AAA", 1, 1.0))
    watcher = Outlet()
    f.attach(watcher)
    step(f, 2, moving("AAA", 2, 2.0))
    clock.advance(2)
    assert f.movers.at is None  # nobody asked: never computed
    f.follow_movers(watcher, 5)
    f.follow_movers(watcher, 0)
    step(f, 3, moving("AAA", 3, 3.0))
    clock.advance(2)
    assert [fr["type"] for fr in watcher.frames] == ["movers"] and f.movers_followers == 0


def test_followers_of_different_counts_share_one_board_and_a_frame_per_count():
    f, clock = fanout(*(moving(s, 1, i) for i, s in enumerate("ABCDE")))
    two, three, three_too = Outlet(), Outlet(), Outlet()
    for outlet, count in ((two, 2), (three, 3), (three_too, 3)):
        f.attach(outlet)
        f.follow_movers(outlet, count)
    step(f, 2, moving("A", 2, 9.0))
    clock.advance(1)
    assert [len(o.frames[-1]["gainers"]) for o in (two, three)] == [2, 3]
    assert three.written[-1] is three_too.written[-1]


def test_a_delisting_is_told_to_whoever_wanted_the_symbol_and_leaves_its_subscription():
    """A watchlist loses the symbol; a client on everything is told too and still wants symbols listed later."""
    from ticker.hub import QuoteHub

    hub = QuoteHub(None, clock=ManualClock())
    hub.store.apply(1, [quote("AAA", 1), quote("BBB", 1)])
    watchlist, everyone, other = Outlet(), Outlet(), Outlet()
    hub.fanout.attach(watchlist, mine("AAA", "BBB"))
    hub.fanout.attach(everyone, EVERYTHING)
    hub.fanout.attach(other, mine("AAA"))
    hub.on_batch({"step": 2, "quotes": [quote("AAA", 2)], "delisted": ["BBB"]})
    assert watchlist.frames == [{"type": "delisted", "step": 2, "symbols": ["BBB"]}, watchlist.frames[1]]
    assert watchlist.frames[1]["type"] == "quotes"
    assert hub.fanout.deliveries[watchlist].interest == mine("AAA")
    assert everyone.frames[0]["type"] == "delisted" and hub.fanout.deliveries[everyone].interest == EVERYTHING
    assert [fr["type"] for fr in other.frames] == ["quotes"]
    assert not hub.store.known("BBB")


# -- the delta format and compression (issue 14; docs/protocol.md, "Quote formats") --------------------------


def full(symbol: str, seq: int, price: float, **fields) -> dict:
    """A whole quote, as ticker.wire.protocol.quote makes them."""
    whole = {"symbol": symbol, "price": price, "prev_close": 100.0, "change": round(price - 100.0, 2)}
    whole |= {"change_pct": round(price - 100.0, 2), "open": 100.0, "high": max(price, 100.0), "low": 100.0}
    return whole | {"volume": 100 * seq, "seq": seq, "ts": 1000 + seq, "halted": False} | fields


def test_a_delta_connection_gets_only_what_changed_and_a_whole_connection_the_whole_quote():
    f, _ = fanout(full("AAA", 1, 100.5), full("BBB", 1, 99.0))
    whole, delta, delta_too = Outlet(), Outlet(), Outlet()
    f.attach(whole, EVERYTHING)
    f.attach(delta, EVERYTHING, delta=True)
    f.attach(delta_too, EVERYTHING, delta=True)
    step(f, 2, full("AAA", 2, 101.25), full("BBB", 2, 99.0, volume=900, halted=True))
    assert whole.frames[0]["quotes"] == [full("AAA", 2, 101.25), full("BBB", 2, 99.0, volume=900, halted=True)]
    assert delta.frames[0]["quotes"] == [
        # change and change_pct follow from price and prev_close: never in a delta
        {"symbol": "AAA", "seq": 2, "price": 101.25, "high": 101.25, "volume": 200, "ts": 1002},
        {"symbol": "BBB", "seq": 2, "volume": 900, "ts": 1002, "halted": True},
    ]
    assert delta.written[0] is delta_too.written[0]  # one frame for every delta connection on that interest


def test_a_delta_without_the_previous_quote_is_the_whole_quote_and_snapshots_and_capped_frames_are_whole():
    f, clock = fanout(full("AAA", 1, 100.5))
    plain, capped = Outlet(), Outlet()
    f.attach(plain, EVERYTHING, delta=True)
    f.attach(capped, EVERYTHING, delta=True)
    f.subscribe(capped, None)
    f.set_max_rate(capped, 1.0)
    step(f, 5, full("AAA", 4, 102.0))  # the hub never saw seq 2 and 3: nothing to compare with
    assert plain.frames[0]["quotes"] == [full("AAA", 4, 102.0)]
    assert capped.frames[0]["type"] == "snapshot" and capped.frames[0]["quotes"] == [full("AAA", 1, 100.5)]
    assert capped.frames[1]["quotes"] == [full("AAA", 4, 102.0)]
    step(f, 6, full("AAA", 5, 102.5))
    clock.advance(1.0)
    assert capped.frames[-1]["quotes"] == [full("AAA", 5, 102.5)], "a capped frame carries whole quotes"
    delta = {"symbol": "AAA", "seq": 5, "price": 102.5, "high": 102.5, "volume": 500, "ts": 1005}
    assert plain.frames[-1]["quotes"] == [delta]


class DeflatingOutlet(Outlet):
    deflate = True  # as a daphne outlet on a connection that negotiated permessage-deflate


def test_frames_made_for_one_connection_are_compressed_only_within_the_steps_budget():
    from ticker.hub.batch import COMPRESSED_SINGLES

    symbols = [f"S{n:03}" for n in range(COMPRESSED_SINGLES + 8)]
    f, _ = fanout(*(full(s, 1, 100.0) for s in symbols))
    # Each watches three symbols of its own (a frame big enough to compress), all but one alone.
    outlets = [DeflatingOutlet() for _ in symbols]
    for n, outlet in enumerate(outlets):
        f.attach(outlet, mine(*(symbols[(n + k) % len(symbols)] for k in range(3))))
    twin = DeflatingOutlet()
    f.attach(twin, f.deliveries[outlets[-1]].interest)
    for _ in range(2):  # the budget is per step
        seq = f.store.step + 1
        step(f, seq, *(full(s, seq, 100.0 + seq) for s in symbols))
        latest = [outlet.written[-1] for outlet in outlets]
        assert [frame.compress for frame in latest[:-1]] == [True] * COMPRESSED_SINGLES + [False] * 7
        assert latest[-1].compress and twin.written[-1] is latest[-1], "a shared frame is always compressed"


# -- issue 20: a feed state that never lies ---------------------------------------------------------------


class Stored:
    """Stands in for a stored market (ticker.market.selectors.Listed) as the hub reads it."""

    def __init__(self, step: int, *quotes: dict):
        self.step, self._quotes = step, list(quotes)
        self.session, self.market = None, None
        self.symbols = {q["symbol"] for q in quotes}

    def quotes(self) -> list[dict]:
        return self._quotes

    def changed_steps(self) -> list[int]:
        return [q["seq"] for q in self._quotes]


def test_a_reload_that_finds_nothing_new_sends_nothing_and_one_that_does_sends_one_snapshot():
    """Back after an outage with the market itself away: no frame (it used to snapshot every client every 5 s)."""
    hub = QuoteHub(None, clock=ManualClock(now=100.0))
    hub.load(Stored(1, quote("AAA", 1), quote("BBB", 1)))
    outlet = Outlet()
    hub.fanout.attach(outlet, EVERYTHING)
    hub.load(Stored(1, quote("AAA", 1), quote("BBB", 1)), resnapshot=True)
    assert outlet.frames == []
    hub.load(Stored(3, quote("AAA", 3), quote("BBB", 1)), resnapshot=True)
    assert outlet.seqs() == [("snapshot", [3, 1])]


@pytest.mark.asyncio
async def test_a_reconnect_and_reload_do_not_make_the_feed_live():
    """A receive that timed out, a reconnect and a reload from the database: the feed stays interrupted until a
    batch arrives (issue 20: each reconnect used to make it "live" for another 3 s)."""
    import asyncio

    from ticker.hub.follower import FeedFollower

    class Layer:
        """A channel layer whose first receive times out (a quiet channel at redis-py's old 5 s) and then waits."""

        receives = 0

        async def new_channel(self) -> str:
            return "quotes.test!1"

        async def group_add(self, group: str, channel: str) -> None:
            pass

        async def group_discard(self, group: str, channel: str) -> None:
            pass

        async def receive(self, channel: str) -> dict:
            self.receives += 1
            if self.receives == 1:
                raise TimeoutError("Timeout reading from 127.0.0.1:6379")
            await asyncio.Event().wait()

    loads = []

    async def load() -> Stored:
        loads.append(asyncio.get_running_loop().time())
        return Stored(1, quote("AAA", 1))

    reloaded = asyncio.Event()

    def on_load(listed: Stored, resnapshot: bool) -> None:
        if resnapshot:
            reloaded.set()  # the follower marks itself connected right after, with no await between

    follower = FeedFollower(Layer(), stale_after_s=3.0, load=load, on_load=on_load, on_batch=None)
    task = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(5):
            await reloaded.wait()
        started = loads[0]
        assert loads[1] > started and follower.connected
        # 3.1 s after the first load, with the reconnect 0.2 s in: interrupted, as no batch ever came.
        assert follower.state(started + 3.1) == INTERRUPTED
        follower.last_batch_at = started + 3.2  # what a batch does (FeedFollower.run)
        assert follower.state(started + 3.3) == LIVE
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_batch_that_carries_a_held_step_resnapshots_instead_of_handing_clients_a_gap():
    """The market held a step (its send failed, or its database work outlasted the lease) and sends its quotes
    with the next: seq skips, so every client gets a snapshot, never a quotes frame with a gap; an ordinary batch
    that continues is a quotes frame as before."""
    from ticker.hub import QuoteHub

    hub = QuoteHub(None, clock=ManualClock())
    hub.store.apply(1, [quote("AAA", 1), quote("BBB", 1)])
    outlet = Outlet()
    hub.fanout.attach(outlet, EVERYTHING)
    hub.on_batch({"step": 3, "quotes": [quote("AAA", 3), quote("BBB", 2)], "carried": True})
    assert outlet.seqs() == [("snapshot", [3, 2])]
    hub.on_batch({"step": 4, "quotes": [quote("AAA", 4)], "carried": True})  # carried, but it continues
    assert outlet.seqs()[1:] == [("quotes", [4])]
