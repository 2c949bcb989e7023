"""Accounts and the watchlist on the account in a real browser (issue 23): Chromium (Playwright) against one real
daphne site and its market (tests/processes.py). Sign up, add a symbol, reload and find it kept; sign in from a
second browser context and see the same list; the merge offer when the browser had its own list."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from .processes import running_site
from .test_browser import ALWAYS_OPEN, CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.processes]

PASSWORD = "browser-account-password-8r2"


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_server):
    with running_site(tmp_path_factory.mktemp("accounts-site"), redis_server.url, market=True, env=ALWAYS_OPEN) as site:
        yield site


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """Pages, each in a browser context of its own (its own cookies and localStorage); none may raise."""
    contexts, errors = [], []

    def make():
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == [], f"a page raised: {errors}"


def row_symbols(page) -> list[str]:
    return page.eval_on_selector_all("#quotes tbody tr[data-symbol]", "trs => trs.map(tr => tr.dataset.symbol)")


def wait_for_rows(page, symbols: list[str]) -> None:
    page.wait_for_function(
        "want => JSON.stringify([...document.querySelectorAll('#quotes tbody tr[data-symbol]')]"
        ".map(tr => tr.dataset.symbol)) === JSON.stringify(want)",
        arg=symbols,
        timeout=10_000,
    )


def sign_up(page, site, username: str) -> None:
    page.goto(site.base + "/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("#signup-form button[type=submit]")
    expect(page.locator("#account")).to_have_attribute("data-user", username)


def sign_in(page, site, username: str) -> None:
    page.goto(site.base + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#account")).to_have_attribute("data-user", username)


def add_symbol(page, symbol: str) -> None:
    """Adds a symbol from the search box, and waits until the account has stored it."""
    search = page.locator("#symbol-search")
    search.click()
    search.press_sequentially(symbol)
    expect(page.locator(f'#search-results [role=option][data-symbol="{symbol}"]')).to_be_visible(timeout=5_000)
    with page.expect_response(lambda r: r.url.endswith("/api/watchlist/") and r.request.method == "PUT") as saved:
        search.press("Enter")
    assert saved.value.status == 200 and symbol in saved.value.json()["symbols"]


def test_the_watchlist_is_kept_on_the_account_and_seen_from_another_browser(site, new_page):
    page = new_page()
    sign_up(page, site, "walter")
    # A new account is empty; this browser's list (the defaults) is offered, not added.
    offer = page.locator("#merge-offer")
    expect(offer).to_contain_text(re.compile(r"Add your \d+ symbols from this browser to your account's watchlist\?"))
    wait_for_rows(page, [])
    page.click("#merge-no")
    expect(offer).to_have_count(0)
    add_symbol(page, "MSFT")
    add_symbol(page, "NVDA")
    wait_for_rows(page, ["MSFT", "NVDA"])
    expect(page.locator('#quotes tr[data-symbol="MSFT"] .name')).to_have_text("Microsoft Corp.")

    page.reload()
    wait_for_rows(page, ["MSFT", "NVDA"])
    expect(page.locator("#merge-offer")).to_have_count(0)  # answered once in this browser
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)

    other = new_page()
    sign_in(other, site, "walter")
    wait_for_rows(other, ["MSFT", "NVDA"])
    # Names this browser never saw are looked up.
    expect(other.locator('#quotes tr[data-symbol="NVDA"] .name')).to_have_text("NVIDIA Corp.", timeout=5_000)

    # Signed out, the browser shows its own list again (the defaults here), not the account's.
    page.click(".sign-out button")
    expect(page.locator("#account")).to_have_attribute("data-user", "")
    page.wait_for_function("document.querySelectorAll('#quotes tbody tr[data-symbol]').length > 2")
    # Every save was published to the user's other connections (the web process logs a failed publish).
    assert "could not be published" not in site.logs()


def test_the_first_sign_in_offers_to_merge_this_browsers_list(site, new_page):
    setup = new_page()
    sign_up(setup, site, "maria")
    setup.click("#merge-no")
    add_symbol(setup, "TSLA")

    page = new_page()
    page.goto(site.base + "/")
    expect(page.locator('#quotes tr[data-symbol="KO"]')).to_be_visible()
    page.locator('#quotes tr[data-symbol="KO"] .remove').click()  # this browser's own list, without KO
    own = row_symbols(page)
    assert "KO" not in own and "TSLA" in own

    sign_in(page, site, "maria")
    wait_for_rows(page, ["TSLA"])  # the account's list, never merged silently
    extra = [s for s in own if s != "TSLA"]
    expect(page.locator("#merge-offer")).to_contain_text(
        f"Add your {len(extra)} symbols from this browser to your account's watchlist?"
    )
    with page.expect_response(lambda r: r.url.endswith("/api/watchlist/") and r.request.method == "PUT") as saved:
        page.click("#merge-yes")
    assert saved.value.json()["symbols"] == ["TSLA", *extra]
    wait_for_rows(page, ["TSLA", *extra])

    page.reload()
    wait_for_rows(page, ["TSLA", *extra])
    expect(page.locator("#merge-offer")).to_have_count(0)


def test_a_symbol_added_in_one_tab_appears_in_the_users_other_tab_within_1_s(site, new_page):
    """Issue 23: the change travels as a personal frame (PUT → channel layer → the web process → the user's other
    socket), and the other tab shows it and subscribes to it without a reload."""
    first = new_page()
    sign_up(first, site, "tabitha")
    first.click("#merge-no")
    add_symbol(first, "AAPL")
    wait_for_rows(first, ["AAPL"])

    second = new_page()  # another browser context: another session of the same user, like another device
    sign_in(second, site, "tabitha")
    wait_for_rows(second, ["AAPL"])
    expect(second.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)

    add_symbol(first, "MSFT")  # returns once the account stored it
    # 1 s: one market step (250 ms) is the bound; the rest is the page's own work on a shared machine.
    second.wait_for_function(
        "() => [...document.querySelectorAll('#quotes tbody tr[data-symbol]')].map(tr => tr.dataset.symbol)"
        ".join() === 'AAPL,MSFT'",
        timeout=1_000,
    )
    # Subscribed, not only drawn: MSFT's row gets a live price.
    expect(second.locator('#quotes tr[data-symbol="MSFT"] .price')).not_to_have_text("", timeout=5_000)
