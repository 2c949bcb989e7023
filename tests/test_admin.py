"""The operator's admin: list, search, halt and resume, edits that never roll prices back, login lockouts."""

from datetime import timedelta
from decimal import Decimal

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import F
from django.test import Client

from ticker.market import services
from ticker.models import Stock

PASSWORD = "pw-for-tests-only"


def log_in(client, username: str, password: str, address: str = "127.0.0.1", **headers: str):
    """POST the admin's login form from ``address``, as a browser does: the path django-axes watches."""
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        **headers,
    )


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


@pytest.fixture(autouse=True)
def quick_password_hashing(settings):
    """The production hasher takes a good part of a second per login on a busy machine, and a lockout test
    logs in a dozen times; what is tested here is who may log in, not how passwords are stored."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("op", "op@example.com", PASSWORD)


@pytest.fixture
def staff(client, operator):
    assert logged_in(log_in(client, "op", PASSWORD))
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


def fail(username: str, address: str, times: int):
    """``times`` wrong passwords; each but one that reaches the failure limit is the login form's own error."""
    for i in range(1, times + 1):
        response = log_in(Client(), username, "wrong-password", address)
        if i < settings.AXES_FAILURE_LIMIT:
            assert response.status_code == 200 and "correct username and password" in response.content.decode()
    return response


def test_repeated_failures_lock_that_user_out_from_that_address(operator, settings):
    """After the failure limit the login page says so (429), and the right password is refused too."""
    assert fail("op", "203.0.113.7", settings.AXES_FAILURE_LIMIT).status_code == 429  # the last failure locks
    locked = log_in(Client(), "op", PASSWORD, "203.0.113.7")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Login locked: too many failed attempts" in page
    assert f"After {settings.AXES_FAILURE_LIMIT} failed logins for <strong>op</strong>" in page
    assert "for 15 minutes" in page and "sessionid" not in locked.cookies


def test_one_failure_fewer_than_the_limit_still_lets_the_right_password_in(operator, settings):
    """The limit is a number of failures: one short of it, the operator still logs in, and the count starts over."""
    fail("op", "203.0.113.7", settings.AXES_FAILURE_LIMIT - 1)
    assert logged_in(log_in(Client(), "op", PASSWORD, "203.0.113.7"))
    fail("op", "203.0.113.7", settings.AXES_FAILURE_LIMIT - 1)  # a success cleared the earlier failures
    assert logged_in(log_in(Client(), "op", PASSWORD, "203.0.113.7"))


def test_a_lockout_holds_one_user_at_one_address_only(operator, settings):
    """The same user from another address, and another user from the locked address, still log in."""
    get_user_model().objects.create_superuser("other", "other@example.com", PASSWORD)
    fail("op", "203.0.113.7", settings.AXES_FAILURE_LIMIT)
    assert log_in(Client(), "op", PASSWORD, "203.0.113.7").status_code == 429
    assert logged_in(log_in(Client(), "op", PASSWORD, "198.51.100.2"))
    assert logged_in(log_in(Client(), "other", PASSWORD, "203.0.113.7"))


def test_the_lock_lifts_after_the_cool_off(operator, settings):
    """Once the cool-off has passed since the last attempt, the right password logs in again."""
    fail("op", "203.0.113.7", settings.AXES_FAILURE_LIMIT)
    assert log_in(Client(), "op", PASSWORD, "203.0.113.7").status_code == 429
    # The clock moves on by the cool-off (django-axes compares each attempt's time with it), without
    # the test waiting 15 minutes; a second short of it the lock still holds.
    almost = settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - almost)
    assert log_in(Client(), "op", PASSWORD, "203.0.113.7").status_code == 429
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME)
    assert logged_in(log_in(Client(), "op", PASSWORD, "203.0.113.7"))


def test_a_client_cannot_dodge_the_lockout_by_sending_x_forwarded_for(operator, settings):
    """Without trusted proxies the address is the connection's: a new X-Forwarded-For on every try changes nothing."""
    for i in range(settings.AXES_FAILURE_LIMIT):
        log_in(Client(), "op", "wrong-password", "203.0.113.7", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
    assert log_in(Client(), "op", PASSWORD, "203.0.113.7", HTTP_X_FORWARDED_FOR="192.0.2.200").status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}


def test_behind_a_trusted_proxy_the_address_it_forwarded_counts(operator, settings):
    """With TICKER_TRUSTED_PROXIES=1 the client is the entry the proxy appended, whatever the client wrote before it."""
    settings.TICKER_TRUSTED_PROXIES = 1
    proxy = "10.0.0.5"  # every request comes from nginx; nginx appends the address it was connected from
    for i in range(settings.AXES_FAILURE_LIMIT):
        log_in(Client(), "op", "wrong-password", proxy, HTTP_X_FORWARDED_FOR=f"192.0.2.{i}, 198.51.100.8")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.8"}
    assert log_in(Client(), "op", PASSWORD, proxy, HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 429
    # Another client behind the same proxy is not locked out.
    assert logged_in(log_in(Client(), "op", PASSWORD, proxy, HTTP_X_FORWARDED_FOR="198.51.100.9"))


def test_failures_from_many_addresses_lock_the_username_everywhere(operator, settings):
    """Issue 21: 25 wrong passwords for one username from 25 addresses lock it; the right password from a 26th
    address gets the lockout page (saying the lock holds everywhere), and another username still logs in."""
    assert settings.TICKER_LOGIN_FAILURE_LIMIT_PER_USER == 20  # the documented default
    get_user_model().objects.create_superuser("other", "other@example.com", PASSWORD)
    for i in range(25):
        log_in(Client(), "op", "wrong-password", f"198.51.100.{i + 1}")
    locked = log_in(Client(), "op", PASSWORD, "203.0.113.99")
    assert locked.status_code == 429 and "sessionid" not in locked.cookies
    page = locked.content.decode()
    assert "After 20 failed logins for <strong>op</strong>" in page and "from anywhere" in page
    assert "python manage.py axes_reset_username USERNAME" in page
    assert logged_in(log_in(Client(), "other", PASSWORD, "203.0.113.99"))


def test_the_username_lock_starts_at_its_limit_and_the_reset_command_lifts_it(operator, settings):
    """One failure short of the per-username limit the right password still logs in from a new address; at the
    limit it is refused; ``manage.py axes_reset_username op`` lets it in again."""
    from django.core.management import call_command

    settings.TICKER_LOGIN_FAILURE_LIMIT_PER_USER = 8
    for i in range(7):
        log_in(Client(), "op", "wrong-password", f"2001:db8:0:0::{i + 1}")  # one IPv6 /64, a new address each try
    assert logged_in(log_in(Client(), "op", PASSWORD, "2001:db8::100"))
    log_in(Client(), "op", "wrong-password", "2001:db8::8")
    assert log_in(Client(), "op", PASSWORD, "2001:db8::101").status_code == 429
    call_command("axes_reset_username", "op")
    assert logged_in(log_in(Client(), "op", PASSWORD, "2001:db8::101"))


def test_a_script_that_logs_in_gets_the_lockout_as_json(operator, settings):
    """A login sent with X-Requested-With (as axes answers scripts) gets 429 JSON saying which lock holds."""
    settings.TICKER_LOGIN_FAILURE_LIMIT_PER_USER = 3
    for i in range(3):
        log_in(Client(), "op", "wrong-password", f"198.51.100.{i + 1}")
    locked = log_in(Client(), "op", PASSWORD, "203.0.113.5", HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    assert locked.status_code == 429
    assert locked.json() == {"failure_limit": 3, "username": "op", "per_username": True, "cooloff_minutes": 15.0}


def test_a_bad_per_username_limit_stops_start_up_naming_the_variable():
    """TICKER_LOGIN_FAILURE_LIMIT_PER_USER must be a whole number of 1 or more; the error names it."""
    from .test_settings import start

    for bad in ("0", "-3", "many"):
        result = start(TICKER_LOGIN_FAILURE_LIMIT_PER_USER=bad)
        assert result.returncode != 0 and "TICKER_LOGIN_FAILURE_LIMIT_PER_USER=" in result.stderr, result.stderr
    assert start("settings.TICKER_LOGIN_FAILURE_LIMIT_PER_USER").stdout.strip() == "20"


@pytest.fixture
def viewer(db, client):
    """A staff user whose only permission is ticker.view_stock, signed in."""
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("viewer", password=PASSWORD, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_stock", content_type__app_label="ticker"))
    client.force_login(user)
    return client


def test_a_view_only_staff_user_is_not_offered_halt_or_resume(viewer, stocks):
    """Issue 21: the changelist a view-only user sees lists the stocks but offers neither action."""
    page = viewer.get("/admin/ticker/stock/")
    assert page.status_code == 200 and "AAA" in page.content.decode()
    offered = dict(page.context["action_form"].fields["action"].choices) if page.context.get("action_form") else {}
    assert "halt" not in offered and "resume" not in offered
    assert "Halt trading" not in page.content.decode()


def test_a_view_only_staff_user_cannot_halt_by_a_forged_post(viewer, stocks):
    """A forged halt POST (one stock, or select_across=1 for all) halts nothing and writes no log entry."""
    from django.contrib.admin.models import LogEntry

    ids = [s.pk for s in stocks]
    one = viewer.post("/admin/ticker/stock/", {"action": "halt", "_selected_action": ids[:1]})
    every = viewer.post("/admin/ticker/stock/", {"action": "halt", "_selected_action": ids[:1], "select_across": "1"})
    assert one.status_code in (200, 302, 403) and every.status_code in (200, 302, 403)
    assert not Stock.objects.filter(halted=True).exists()
    Stock.objects.update(halted=True)
    viewer.post("/admin/ticker/stock/", {"action": "resume", "_selected_action": ids, "select_across": "1"})
    assert Stock.objects.filter(halted=True).count() == 3 and not LogEntry.objects.exists()


def test_a_halt_logs_who_halted_each_stock_and_leaves_the_live_price_alone(staff, stocks):
    """A permitted halt writes one admin log entry per stock naming the user ("Halted"), and a resume likewise;
    a market step taken meanwhile is not rolled back."""
    from django.contrib.admin.models import CHANGE, LogEntry

    market = services.market_open(interval_ms=250, seed=1)
    services.market_step(market=market, ts=0)
    ids = [s.pk for s in stocks[:2]]
    moved = {s.pk: (s.price, s.seq) for s in Stock.objects.filter(pk__in=ids)}
    response = staff.post("/admin/ticker/stock/", {"action": "halt", "_selected_action": ids}, follow=True)
    assert "Halted 2 stock(s)" in response.content.decode()
    entries = LogEntry.objects.filter(action_flag=CHANGE).order_by("object_id")
    assert [(e.user.username, int(e.object_id), e.get_change_message()) for e in entries] == [
        ("op", ids[0], "Halted"),
        ("op", ids[1], "Halted"),
    ]
    assert {s.pk: (s.price, s.seq) for s in Stock.objects.filter(pk__in=ids)} == moved
    staff.post("/admin/ticker/stock/", {"action": "resume", "_selected_action": ids, "select_across": "1"})
    assert not Stock.objects.filter(halted=True).exists()
    assert LogEntry.objects.filter(change_message="Resumed").count() == 2  # only the two that were halted
