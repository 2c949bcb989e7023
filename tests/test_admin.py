"""The operator's admin: list, search, halt and resume, edits that never roll prices back."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from ticker import services
from ticker.models import Stock


@pytest.fixture
def staff(client, db):
    get_user_model().objects.create_superuser("op", "op@example.com", "pw-for-tests-only")
    client.login(username="op", password="pw-for-tests-only")
    return client


def test_admin_needs_a_staff_login(client, stocks):
    """Anonymous visitors are sent to the login page."""
    response = client.get("/admin/ticker/stock/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_stock_list_shows_price_change_and_halted(staff, stocks):
    """The list shows symbol, price, change and halted, and search finds by symbol."""
    html = staff.get("/admin/ticker/stock/?q=BBB").content.decode()
    assert "BBB" in html and "50.00" in html and "AAA Corp." not in html
    assert "change" in html and "halted" in html.lower()


def test_halt_and_resume_actions(staff, stocks):
    """The halt action sets halted; resume clears it."""
    ids = [s.pk for s in stocks[:2]]
    staff.post("/admin/ticker/stock/", {"action": "halt", "_selected_action": ids})
    assert set(Stock.objects.filter(halted=True).values_list("symbol", flat=True)) == {"AAA", "BBB"}
    staff.post("/admin/ticker/stock/", {"action": "resume", "_selected_action": ids})
    assert not Stock.objects.filter(halted=True).exists()


def test_editing_a_stock_does_not_roll_back_the_live_price(staff, stocks):
    """An edit saved after the market moved keeps the market's price and seq."""
    stock = stocks[0]
    form_page = staff.get(f"/admin/ticker/stock/{stock.pk}/change/")
    assert form_page.status_code == 200
    market = services.market_open(interval_ms=250, seed=1)
    for i in range(5):
        services.market_step(market=market, ts=i)
    moved = Stock.objects.get(pk=stock.pk)
    response = staff.post(
        f"/admin/ticker/stock/{stock.pk}/change/",
        {
            "symbol": "AAA",
            "name": "AAA Corp.",
            "reference_price": "100.00",
            "active": "on",
            "volatility": "0.9",
            "drift": "0.01",
        },
    )
    assert response.status_code == 302
    after = Stock.objects.get(pk=stock.pk)
    assert after.volatility == 0.9
    assert (after.price, after.seq) == (moved.price, moved.seq)


def test_adding_a_stock_needs_a_valid_symbol_and_price(staff, stocks):
    """A bad symbol is refused with a message; a good one is created with its starting price."""
    bad = staff.post(
        "/admin/ticker/stock/add/",
        {"symbol": "bad symbol", "name": "X", "reference_price": "1", "price": "1", "volatility": "0.3", "drift": "0"},
    )
    assert bad.status_code == 200 and "A symbol is 1 to 10 characters" in bad.content.decode()
    good = staff.post(
        "/admin/ticker/stock/add/",
        {
            "symbol": "NEW",
            "name": "New Co.",
            "reference_price": "10",
            "price": "10",
            "volatility": "0.3",
            "drift": "0",
            "active": "on",
        },
    )
    assert good.status_code == 302 and Stock.objects.get(symbol="NEW").price == 10


def test_candles_are_browsable_but_read_only(staff, stocks):
    """Stored candles are listed; they cannot be added or edited by hand."""
    market = services.market_open(interval_ms=250, seed=1)
    for i in range(3):
        services.market_step(market=market, ts=i * 40_000)
    assert staff.get("/admin/ticker/candle/").status_code == 200
    assert staff.get("/admin/ticker/candle/add/").status_code == 403


def test_a_lower_case_symbol_is_upper_cased_and_the_previous_close_defaults_to_the_starting_price(staff, stocks):
    """Typing "brk.c" lists BRK.C; leaving the previous close empty measures change from the starting price."""
    response = staff.post(
        "/admin/ticker/stock/add/",
        {
            "symbol": " brk.c ",
            "name": "B Co.",
            "sector": "Financials",
            "price": "12.50",
            "volatility": "0.3",
            "drift": "0",
        },
    )
    assert response.status_code == 302
    stock = Stock.objects.get(symbol="BRK.C")
    assert (stock.price, stock.reference_price, stock.sector, stock.change) == (
        Decimal("12.50"),
        Decimal("12.50"),
        "Financials",
        0,
    )


def test_the_add_form_puts_the_starting_price_with_the_reference_data(staff, stocks):
    """The add form asks for the starting price in its first section, and has no "Live" section."""
    html = staff.get("/admin/ticker/stock/add/").content.decode()
    assert "Live (written by the market)" not in html
    first_section = html[html.index('<fieldset class="module aligned') : html.index("Price model")]
    assert 'name="price"' in first_section and 'name="symbol"' in first_section


def test_the_change_form_shows_the_market_columns_read_only(staff, stocks):
    """Editing a stock shows price, session figures and candle under "Live", not as inputs."""
    html = staff.get(f"/admin/ticker/stock/{stocks[0].pk}/change/").content.decode()
    assert "Live (written by the market)" in html and "session volume" in html.lower()
    assert 'name="price"' not in html and 'name="volume"' not in html


def test_an_edit_never_rolls_back_the_session_figures(staff, stocks):
    """Saving the operator's columns leaves the market's open, high, low, volume and previous close alone."""
    market = services.market_open(interval_ms=250, seed=1)
    for i in range(5):
        services.market_step(market=market, ts=i * 250)
    before = Stock.objects.get(symbol="AAA")
    Stock.objects.filter(pk=before.pk).update(volume=before.volume + 700, high=before.high + 1)  # the market moved on
    response = staff.post(
        f"/admin/ticker/stock/{before.pk}/change/",
        {
            "symbol": "AAA",
            "name": "AAA Holdings",
            "sector": "Energy",
            "reference_price": "100.00",
            "active": "on",
            "volatility": "0.3",
            "drift": "0.05",
        },
    )
    assert response.status_code == 302
    after = Stock.objects.get(pk=before.pk)
    assert (after.name, after.sector) == ("AAA Holdings", "Energy")
    assert (after.volume, after.high, after.seq) == (before.volume + 700, before.high + 1, before.seq)


def test_the_list_pages_5000_symbols_with_search_and_filters(staff, db, django_assert_max_num_queries):
    """With 5,000 listed symbols the list is paged, searchable by symbol or name, and filtered by sector."""
    services.seed_symbols(total=5000)
    with django_assert_max_num_queries(12):
        page = staff.get("/admin/ticker/stock/")
    html = page.content.decode()
    assert page.status_code == 200 and html.count('class="action-select"') == 100
    assert "Halted" in html and "Active" in html and "By sector" in html
    found = staff.get("/admin/ticker/stock/?q=simulated+co.+4970").content.decode()
    assert "SIM4970" in found and "SIM4969" not in found
    energy = staff.get("/admin/ticker/stock/?sector=Energy&active__exact=1&halted__exact=0&q=xo")
    assert energy.status_code == 200 and "XOM" in energy.content.decode()
    assert "AAPL" not in staff.get("/admin/ticker/stock/?sector=Energy&q=a").content.decode()


def test_the_list_keeps_few_columns(staff, stocks):
    """The list shows symbol, name, sector, price, change %, halted and active: nothing wider."""
    from ticker.admin import StockAdmin

    assert StockAdmin.list_display == ("symbol", "name", "sector", "price", "change_pct_display", "halted", "active")


def test_stocks_cannot_be_deleted_only_deactivated(staff, stocks):
    """Deleting would restart a symbol's seq; the admin offers deactivation instead."""
    assert staff.get(f"/admin/ticker/stock/{stocks[0].pk}/delete/").status_code == 403
