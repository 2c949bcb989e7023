"""The market lease on the real database (SQLite or PostgreSQL, whichever the suite runs on), and the web side's
check of which market a batch comes from (pure logic)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import connection, connections, transaction

from ticker.hub import QuoteHub
from ticker.hub.source import FeedSource, Verdict
from ticker.market import lease, services
from ticker.market.lease import LeaseLost, MarketIdentity
from ticker.market.selectors import Listed
from ticker.models import Candle, MarketLease, Stock

TTL_S = 2.5


def stored() -> dict:
    """Everything a step writes: the stocks' market columns, the candles, the lease's step."""
    return {
        "stocks": list(Stock.objects.order_by("symbol").values_list("symbol", "price", "seq", "step", "quoted_at")),
        "candles": Candle.objects.count(),
        "lease_step": MarketLease.objects.get().step,
    }


def test_a_stale_leader_cannot_store_a_step(stocks):
    """A market whose lease was taken over (token N+1) has its step refused, and nothing it computed is stored."""
    old, row = lease.acquire(holder="old", ttl_s=TTL_S)
    assert old is not None
    market = services.market_open(interval_ms=250, seed=1)
    services.market_step(market=market, ts=1_000, lease=old)
    # The old leader stalls (a long GC pause, a frozen VM) past its expiry; a standby takes over. The standby's
    # clock says the lease expired; the old leader's does not, and that must not matter.
    new, row = lease.acquire(holder="new", ttl_s=TTL_S, now_ms=MarketLease.objects.get().expires_at + 1)
    assert new is not None and new.token == old.token + 1
    before, step_before = stored(), market.step_no
    with pytest.raises(LeaseLost, match=f"held by new \\(token {new.token}\\)"):
        services.market_step(market=market, ts=2_000, lease=old)
    assert stored() == before, "a refused step stores nothing"
    assert market.step_no == step_before, "and the refusing market is rolled back in memory too"
    # The new leader continues from what is stored.
    taken = services.market_open(interval_ms=250, seed=2)
    result = services.market_step(market=taken, ts=2_000, lease=new)
    assert result.step == step_before + 1
    assert {t.symbol: t.seq for t in result.ticks} == {s: seq + 1 for s, _p, seq, _st, _q in before["stocks"]}


def test_only_an_expired_or_released_lease_is_taken_and_every_takeover_grows_the_token(db):
    """A live lease is not taken; an expired or released one is, with the token one higher each time."""
    first, _ = lease.acquire(holder="a", ttl_s=TTL_S, now_ms=10_000)
    assert first is not None
    taken, row = lease.acquire(holder="b", ttl_s=TTL_S, now_ms=12_000)
    assert taken is None and (row.holder, row.token) == ("a", first.token)
    second, _ = lease.acquire(holder="b", ttl_s=TTL_S, now_ms=12_501)
    assert second is not None and second.token == first.token + 1
    assert not lease.release(first), "only the holder can release"
    assert lease.release(second)
    third, _ = lease.acquire(holder="a", ttl_s=TTL_S, now_ms=12_502)
    assert third is not None and third.token == second.token + 1


def test_a_late_leader_that_nobody_replaced_keeps_stepping(stocks):
    """Expiry only lets another market take over: a leader one slow step past it, with no standby, goes on."""
    held, _ = lease.acquire(holder="only", ttl_s=TTL_S, now_ms=1)  # expired long ago by the real clock
    market = services.market_open(interval_ms=250, seed=1)
    assert services.market_step(market=market, ts=1_000, lease=held).ticks
    assert MarketLease.objects.get().expires_at > 1


def test_a_takeover_after_quiet_steps_does_not_reuse_their_step_numbers(stocks):
    """Steps that change no stock still count: the next leader starts after the last stored step."""
    held, _ = lease.acquire(holder="a", ttl_s=TTL_S)
    market = services.market_open(interval_ms=250, seed=1)
    Stock.objects.update(halted=True)
    steps = [services.market_step(market=market, ts=1_000 + i, lease=held) for i in range(5)]
    assert not steps[-1].ticks, "halted and announced: the last steps are quiet"
    assert services.market_open(interval_ms=250, seed=1).step_no == steps[-1].step


def test_a_market_gone_quiet_in_its_step_lets_go_of_the_lease_row_within_a_lease(transactional_db):
    """PostgreSQL: a leader that falls silent between its renewal and its commit (cut off from the database, issue
    25) holds the lease row's lock only for a lease: the server ends its transaction and a standby takes over."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's lock lives in the process that holds it; a row lock outliving its market is PostgreSQL's")
    held, _ = lease.acquire(holder="old", ttl_s=0.5)
    renewed, outcome = threading.Event(), []

    def quiet_leader() -> None:
        try:
            with transaction.atomic():
                lease.renew(held, step=1, ttl_s=0.5)
                renewed.set()
                time.sleep(3)  # no next statement and no commit: as seen from a server whose client was cut off
            outcome.append("committed")
        except Exception as exc:  # the server ended the session: the commit fails
            outcome.append(type(exc).__name__)
        finally:
            connections.close_all()

    thread = threading.Thread(target=quiet_leader)
    thread.start()
    assert renewed.wait(10)
    started, taken = time.monotonic(), None
    while taken is None and time.monotonic() - started < 10:
        taken, _ = lease.acquire(holder="new", ttl_s=0.5)  # waits on the row lock while the old step holds it
        time.sleep(0.05)
    waited = time.monotonic() - started
    thread.join(10)
    assert taken is not None and taken.token == held.token + 1
    assert waited < 2.0, f"the standby waited {waited:.1f} s: the quiet step held the row for its whole silence"
    assert outcome != ["committed"], "the quiet step was ended by the server, not committed after the takeover"


def test_the_site_id_is_made_once_per_database(db):
    """Every process of a site reads the same site id; the token follows the lease."""
    first = lease.identity()
    held, _ = lease.acquire(holder="a", ttl_s=TTL_S)
    assert lease.identity() == MarketIdentity(first.site, held.token)
    assert len(first.site) == 16


def batch(site, token, step=1, quotes=()):
    return {"type": "quote.batch", "step": step, "quotes": list(quotes), "session": None, "site": site, "token": token}


def test_batches_of_another_sites_market_are_ignored_and_reported_once(caplog, monkeypatch):
    """Two sites on one Redis namespace: the other site's batches are dropped, with one ERROR per foreign site."""
    monkeypatch.setattr(logging.getLogger("ticker"), "propagate", True)  # settings keep ticker's logs to itself
    source = FeedSource()
    source.loaded(MarketIdentity("ours", 3))
    with caplog.at_level(logging.INFO, logger="ticker.hub.source"):
        verdicts = [source.judge(batch("theirs", 1, step)) for step in range(50)]
        verdicts.append(source.judge(batch("ours", 3)))
        verdicts.append(source.judge({"type": "quote.batch", "step": 1, "quotes": []}))  # no identity at all
    assert verdicts == [Verdict.FOREIGN] * 50 + [Verdict.CURRENT, Verdict.FOREIGN]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "site theirs" in errors[0].getMessage() and "TICKER_CHANNEL_PREFIX" in errors[0].getMessage()
    assert source.foreign == {"theirs": 50, "None": 1}


def test_a_new_leader_is_followed_and_the_old_one_ignored():
    """A higher token is a takeover; a lower one is a stale leader's last batch, dropped."""
    source = FeedSource()
    source.loaded(MarketIdentity("ours", 3))
    assert source.judge(batch("ours", 4)) is Verdict.NEW_LEADER
    assert source.judge(batch("ours", 4)) is Verdict.CURRENT
    assert source.judge(batch("ours", 3)) is Verdict.STALE
    source.loaded(MarketIdentity("ours", 2))  # a read older than the batches already seen changes nothing
    assert source.judge(batch("ours", 4)) is Verdict.CURRENT


def quote(symbol: str, seq: int) -> dict:
    return {"symbol": symbol, "seq": seq, "price": 1.0}


def test_a_new_leaders_first_batch_that_skips_seq_is_not_applied():
    """The old leader stored a step it never published: the hub reloads instead of handing clients a gap."""
    hub = QuoteHub(None)
    hub.load(Listed([]))
    hub.store.apply(1, [quote("AAA", 5), quote("BBB", 7)])
    assert not hub.on_batch(batch("ours", 2, 2, [quote("AAA", 7), quote("BBB", 8)]), new_leader=True)
    assert [q["seq"] for q in hub.store.snapshot()] == [5, 7]
    assert hub.on_batch(batch("ours", 2, 2, [quote("AAA", 6), quote("BBB", 8)]), new_leader=True)
    assert [q["seq"] for q in hub.store.snapshot()] == [6, 8]


def test_still_ours_until_another_market_takes_the_lease_over(db):
    """The read a step that outlasted its lease makes before publishing (ticker/market/loop.py)."""
    mine, _ = lease.acquire(holder="old", now_ms=1_000)
    assert lease.still_ours(mine)
    lease.acquire(holder="new", now_ms=10**15)  # expired, and taken over
    assert not lease.still_ours(mine)
