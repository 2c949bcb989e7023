"""The pure price model: no database, no Django."""

from decimal import Decimal

import pytest

from ticker.market.prices import Instrument, Market, Tick, dt_years, next_price, quantize

DT = dt_years(0.25, 60)


def ticks(*symbols: str, price: str = "100.00", seq: int = 5) -> dict[str, Tick]:
    return {s: Tick(s, Decimal(price), Decimal(price), seq, 0) for s in symbols}


def instruments(*symbols: str, volatility: float = 0.3, halted: tuple[str, ...] = ()) -> dict[str, Instrument]:
    return {s: Instrument(s, volatility, 0.05, s in halted) for s in symbols}


def test_same_seed_replays_the_same_prices():
    """Two markets with one seed produce identical price paths."""
    paths = []
    for _ in range(2):
        market = Market(ticks("AAA", "BBB"), dt=DT, seed=42)
        paths.append([[t.price for t in market.step(instruments("AAA", "BBB"), ts=i)] for i in range(50)])
    assert paths[0] == paths[1]


def test_different_seeds_differ():
    """A different seed gives a different path."""
    a = Market(ticks("AAA"), dt=DT, seed=1)
    b = Market(ticks("AAA"), dt=DT, seed=2)
    path_a = [a.step(instruments("AAA"), ts=i) for i in range(20)]
    path_b = [b.step(instruments("AAA"), ts=i) for i in range(20)]
    assert path_a != path_b


def test_seq_grows_by_exactly_one_per_change():
    """Every change of a symbol carries the previous seq plus one."""
    market = Market(ticks("AAA", seq=10), dt=DT, seed=3)
    seen = [10]
    for i in range(200):
        for tick in market.step(instruments("AAA"), ts=i):
            seen.append(tick.seq)
    assert seen == list(range(10, 10 + len(seen)))
    assert len(seen) > 100  # a 30% volatility moves a $100 price by a cent most steps


def test_unchanged_price_is_not_reported():
    """A symbol whose quoted price stays the same is not in the step's changes."""
    market = Market(ticks("AAA"), dt=DT, seed=4)
    changes = [market.step(instruments("AAA", volatility=0.0), ts=i) for i in range(20)]
    # Zero volatility with 5% drift moves $100 by far less than a cent a step.
    assert changes == [[]] * 20


def test_prices_are_cents_and_positive():
    """Quoted prices have two decimals and never reach zero."""
    market = Market(ticks("AAA", price="0.02"), dt=DT * 1000, seed=5)
    for i in range(500):
        for tick in market.step(instruments("AAA", volatility=3.0), ts=i):
            assert tick.price >= Decimal("0.01")
            assert tick.price == tick.price.quantize(Decimal("0.01"))


def test_halt_reports_once_then_freezes_the_price():
    """Halting a symbol is one change (halted=True); after that its price stays put."""
    market = Market(ticks("AAA", "BBB"), dt=DT, seed=6)
    first = market.step(instruments("AAA", "BBB", halted=("AAA",)), ts=1)
    halted = [t for t in first if t.symbol == "AAA"]
    assert len(halted) == 1 and halted[0].halted and halted[0].price == Decimal("100.00")
    for i in range(20):
        assert all(t.symbol != "AAA" for t in market.step(instruments("AAA", "BBB", halted=("AAA",)), ts=i))
    resumed = market.step(instruments("AAA", "BBB"), ts=99)
    assert [t.halted for t in resumed if t.symbol == "AAA"] == [False]


def test_halting_one_symbol_does_not_change_the_others_path():
    """The random stream of other symbols is the same whether or not one is halted."""
    a = Market(ticks("AAA", "BBB"), dt=DT, seed=7)
    b = Market(ticks("AAA", "BBB"), dt=DT, seed=7)
    for i in range(30):
        pa = [t.price for t in a.step(instruments("AAA", "BBB"), ts=i) if t.symbol == "BBB"]
        pb = [t.price for t in b.step(instruments("AAA", "BBB", halted=("AAA",)), ts=i) if t.symbol == "BBB"]
        assert pa == pb


def test_new_listing_is_quoted_in_the_next_step():
    """A never-quoted symbol (seq 0) appears in the next step even if its price does not move."""
    market = Market({}, dt=DT, seed=8)
    market.add(Tick("NEW", Decimal("10.00"), Decimal("10.00"), 0, 0))
    changes = market.step(instruments("NEW", volatility=0.0), ts=1)
    assert [(t.symbol, t.seq) for t in changes] == [("NEW", 1)]


def test_restore_undoes_a_step():
    """restore(checkpoint()) puts prices, seq and the random stream back."""
    market = Market(ticks("AAA"), dt=DT, seed=9)
    saved = market.checkpoint()
    first = market.step(instruments("AAA"), ts=1)
    market.restore(saved)
    assert market.step(instruments("AAA"), ts=1) == first


def test_change_and_percent_are_against_the_reference_price():
    """change and change_pct measure from the previous close."""
    tick = Tick("AAA", Decimal("110.00"), Decimal("100.00"), 1, 0)
    assert tick.change == Decimal("10.00")
    assert tick.change_pct == 10.0


def test_gbm_step_follows_the_formula():
    """next_price applies exp((mu - sigma^2/2) dt + sigma sqrt(dt) z)."""
    assert next_price(100.0, volatility=0.0, drift=0.0, dt=1.0, z=3.0) == 100.0
    assert next_price(100.0, volatility=0.2, drift=0.0, dt=1.0, z=0.0) == pytest.approx(100 * 2.718281828**-0.02)


def test_quantize_rounds_half_even_to_cents():
    """Prices are rounded to cents, banker's rounding."""
    assert quantize(1.005) == Decimal("1.00")
    assert quantize(Decimal("1.015")) == Decimal("1.02")
    assert quantize(0.0) == Decimal("0.01")


@pytest.mark.parametrize("interval, speed", [(0, 60), (0.25, 0), (-1, 60)])
def test_dt_rejects_nonpositive_inputs(interval, speed):
    """A zero or negative interval or speed is refused."""
    with pytest.raises(ValueError):
        dt_years(interval, speed)
