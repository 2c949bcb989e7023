"""The market step against the database: persistence, admin controls, restart."""

import pytest

from ticker import services
from ticker.models import PricePoint, Stock


def open_market(seed=1):
    return services.market_open(interval_ms=250, seed=seed)


@pytest.mark.django_db
def test_migrate_seeds_thirty_simulated_symbols():
    """`migrate` alone gives a working market of about 30 symbols."""
    assert Stock.objects.filter(active=True).count() == 30
    assert Stock.objects.filter(symbol="AAPL", halted=False).exists()


def test_step_persists_prices_seq_and_history(stocks):
    """Each change is stored on the stock and as a history point with the same seq."""
    market = open_market()
    results = [services.market_step(market=market, ts=1000 + i) for i in range(20)]
    aaa = Stock.objects.get(symbol="AAA")
    assert aaa.seq > 0 and aaa.step == max(r.step for r in results if any(t.symbol == "AAA" for t in r.ticks))
    points = list(PricePoint.objects.filter(stock=aaa).order_by("seq"))
    assert [p.seq for p in points] == list(range(1, aaa.seq + 1))
    assert points[-1].price == aaa.price


def test_restart_continues_from_persisted_prices(stocks):
    """A new market process starts from the stored prices, seq and step."""
    market = open_market(seed=1)
    for i in range(10):
        services.market_step(market=market, ts=i)
    stored = {s.symbol: (s.price, s.seq) for s in Stock.objects.all()}
    again = open_market(seed=2)
    assert again.step_no == 10
    assert {s: (t.price, t.seq) for s, t in again.ticks.items()} == stored
    result = services.market_step(market=again, ts=99)
    assert result.step == 11
    for tick in result.ticks:
        assert tick.seq == stored[tick.symbol][1] + 1


def test_halt_in_the_database_applies_on_the_next_step(stocks):
    """An operator's halt is picked up on the next step without a restart."""
    market = open_market()
    services.market_step(market=market, ts=1)
    Stock.objects.filter(symbol="AAA").update(halted=True)
    result = services.market_step(market=market, ts=2)
    assert [(t.symbol, t.halted) for t in result.ticks if t.symbol == "AAA"] == [("AAA", True)]
    price = Stock.objects.get(symbol="AAA").price
    for i in range(10):
        services.market_step(market=market, ts=3 + i)
    assert Stock.objects.get(symbol="AAA").price == price


def test_new_symbol_is_listed_without_a_restart(stocks):
    """A stock added while the market runs is quoted on the next step."""
    market = open_market()
    services.market_step(market=market, ts=1)
    Stock.objects.create(symbol="NEW", name="New Co.", price="5.00", reference_price="5.00")
    result = services.market_step(market=market, ts=2)
    assert "NEW" in {t.symbol for t in result.ticks}


def test_volatility_edit_applies_on_the_next_step(stocks):
    """Setting volatility to zero stops a symbol moving from the next step on."""
    market = open_market()
    services.market_step(market=market, ts=0)  # the first step announces the new listings
    Stock.objects.update(volatility=0.0)
    changed = [services.market_step(market=market, ts=i).ticks for i in range(20)]
    assert changed == [[]] * 20


def test_deactivated_symbol_stops_trading(stocks):
    """An inactive symbol is no longer stepped."""
    market = open_market()
    Stock.objects.filter(symbol="CCC").update(active=False)
    for i in range(10):
        assert "CCC" not in {t.symbol for t in services.market_step(market=market, ts=i).ticks}


def test_failed_write_rolls_the_market_back(stocks, monkeypatch):
    """If a step cannot be stored, nothing of it is kept, so seq never runs ahead of the database."""
    market = open_market()
    before = dict(market.ticks)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(PricePoint.objects, "bulk_create", broken)
    with pytest.raises(RuntimeError):
        services.market_step(market=market, ts=1)
    assert market.ticks == before and market.step_no == 0
    assert not PricePoint.objects.exists()


def test_history_is_pruned_to_the_window(stocks, settings):
    """History older than MARKET_HISTORY_STEPS steps is deleted."""
    market = open_market()
    for i in range(services.PRUNE_EVERY_STEPS * 3):
        services.market_step(market=market, ts=i, history_steps=50)
    oldest = PricePoint.objects.order_by("step").first().step
    assert oldest > market.step_no - 50 - services.PRUNE_EVERY_STEPS


def test_reference_price_edit_reaches_the_quotes(stocks):
    """A new previous close is a change: the next step quotes the symbol with change measured from it."""
    market = open_market()
    services.market_step(market=market, ts=1)
    Stock.objects.filter(symbol="AAA").update(reference_price="50.00", volatility=0.0)
    result = services.market_step(market=market, ts=2)
    tick = next(t for t in result.ticks if t.symbol == "AAA")
    assert tick.reference_price == 50 and tick.change == tick.price - 50


def test_halt_set_while_the_market_was_down_is_announced_on_start(stocks):
    """A halt made while no market ran is quoted (halted, seq +1) on the first step after start."""
    market = open_market()
    services.market_step(market=market, ts=1)
    Stock.objects.filter(symbol="BBB").update(halted=True)
    seq = Stock.objects.get(symbol="BBB").seq
    restarted = open_market(seed=5)
    result = services.market_step(market=restarted, ts=2)
    bbb = next(t for t in result.ticks if t.symbol == "BBB")
    assert bbb.halted and bbb.seq == seq + 1


def test_deactivation_is_reported_as_a_delisting(stocks):
    """Deactivating a symbol names it in the step's delisted list, once."""
    market = open_market()
    services.market_step(market=market, ts=1)
    Stock.objects.filter(symbol="CCC").update(active=False)
    assert services.market_step(market=market, ts=2).delisted == ["CCC"]
    assert services.market_step(market=market, ts=3).delisted == []
