"""The market step against the database: persistence, admin controls, restart."""

import pytest

from ticker.market import services
from ticker.market.prices import CANDLE_MS
from ticker.models import Candle, MarketState, Stock


def open_market(seed=1):
    return services.market_open(interval_ms=250, seed=seed)


@pytest.mark.django_db
def test_migrate_seeds_thirty_simulated_symbols():
    """`migrate` alone gives a working market of about 30 symbols."""
    assert Stock.objects.filter(active=True).count() == 30
    assert Stock.objects.filter(symbol="AAPL", halted=False).exists()


def test_step_persists_prices_seq_and_session_figures(stocks):
    """Each change is stored on the stock: price, seq, step, and the session's open, high, low and volume."""
    market = open_market()
    results = [services.market_step(market=market, ts=1000 + i * 250) for i in range(20)]
    aaa = Stock.objects.get(symbol="AAA")
    last = [t for r in results for t in r.ticks if t.symbol == "AAA"][-1]
    assert aaa.seq == last.seq > 0 and aaa.step == max(r.step for r in results if last in r.ticks)
    stored = (aaa.price, aaa.open, aaa.high, aaa.low, aaa.volume)
    assert stored == (last.price, last.open, last.high, last.low, last.volume)
    assert aaa.low <= aaa.price <= aaa.high and aaa.volume > 0
    assert services.market_open(interval_ms=250, seed=1).ticks["AAA"] == last  # read back exactly


def test_finished_candles_are_stored_once_a_minute(stocks):
    """A candle is stored when its minute is over; the current one lives on the stock row."""
    market = open_market()
    for i in range(300):  # 75 s of steps from ts 0: one minute turns
        services.market_step(market=market, ts=i * 250)
    aaa = Stock.objects.get(symbol="AAA")
    (candle,) = Candle.objects.filter(stock=aaa)
    assert candle.time == 0 and aaa.candle_time == CANDLE_MS
    assert candle.low <= min(candle.open, candle.close) and candle.high >= max(candle.open, candle.close)
    assert candle.volume > 0 and aaa.volume == candle.volume + aaa.candle_volume


def test_the_session_is_stored_for_polling(stocks, settings):
    """The session of the latest step is in MarketState; a close keeps the session's change, the open rolls it."""
    settings.MARKET_SESSION_OPEN_HOURS, settings.MARKET_SESSION_CLOSED_HOURS = 1.0, 1.0  # 60 s open, 60 s closed
    market = open_market(seed=5)
    for ts in range(1_000, 51_000, 1_000):  # fifty steps: the prices move away from their previous close
        services.market_step(market=market, ts=ts)
    assert MarketState.objects.get().session_state == "open"
    result = services.market_step(market=market, ts=61_000)
    assert result.session.state == "closed" and {t.symbol for t in result.ticks} == {"AAA", "BBB", "CCC"}
    state = MarketState.objects.get()
    assert (state.session_state, state.session_until) == ("closed", 120_000)
    closed = {stock.symbol: (stock.prev_close, stock.price) for stock in Stock.objects.all()}
    assert any(prev != price for prev, price in closed.values())  # the session's change is still shown
    services.market_step(market=market, ts=121_000)
    assert MarketState.objects.get().session_state == "open"
    for stock in Stock.objects.all():
        assert stock.prev_close == closed[stock.symbol][1]  # the last session's close


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

    monkeypatch.setattr(services, "_store_session", broken)  # the last write of the first step
    with pytest.raises(RuntimeError):
        services.market_step(market=market, ts=1)
    assert market.ticks == before and market.step_no == 0 and market.session is None
    assert Stock.objects.filter(seq__gt=0).count() == 0  # the UPDATE before the failure was rolled back too


def test_candles_are_pruned_to_the_window(stocks):
    """Candles older than MARKET_CANDLE_MINUTES minutes are deleted."""
    market = open_market()
    for minute in range(8):
        for i in range(3):
            services.market_step(market=market, ts=minute * CANDLE_MS + i * 20_000, candle_minutes=3)
    times = sorted(set(Candle.objects.values_list("time", flat=True)))
    assert times == [4 * CANDLE_MS, 5 * CANDLE_MS, 6 * CANDLE_MS]


def test_seed_symbols_lists_simulated_symbols_until_the_total_is_active(db):
    """seed_symbols adds SIM0001... with names and sectors until N are active; again, it adds nothing."""
    assert services.seed_symbols(total=100) == 70
    assert Stock.objects.filter(active=True).count() == 100
    sim = Stock.objects.get(symbol="SIM0001")
    assert sim.name == "Simulated Co. 0001" and sim.sector and sim.price == sim.reference_price
    assert Stock.objects.filter(symbol="AAPL", sector="Information Technology").exists()
    Stock.objects.filter(symbol="SIM0002").update(active=False)
    assert services.seed_symbols(total=100) == 1  # SIM0002 stays inactive; SIM0071 is listed
    assert not Stock.objects.get(symbol="SIM0002").active and Stock.objects.filter(active=True).count() == 100
    assert services.seed_symbols(total=50) == 0


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
