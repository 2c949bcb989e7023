"""The operator's admin: list, search, halt and resume, edits that never roll prices back."""

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


def test_history_is_browsable_but_read_only(staff, stocks):
    """Price history is listed; it cannot be added or edited by hand."""
    market = services.market_open(interval_ms=250, seed=1)
    services.market_step(market=market, ts=1)
    assert staff.get("/admin/ticker/pricepoint/").status_code == 200
    assert staff.get("/admin/ticker/pricepoint/add/").status_code == 403


def test_stocks_cannot_be_deleted_only_deactivated(staff, stocks):
    """Deleting would restart a symbol's seq; the admin offers deactivation instead."""
    assert staff.get(f"/admin/ticker/stock/{stocks[0].pk}/delete/").status_code == 403
