"""The dashboard in a real browser: Playwright driving Debian's Chromium, headless, against real processes."""

from __future__ import annotations

import shutil
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from .processes import NoWebSocketProxy, running_site

pytestmark = [pytest.mark.browser, pytest.mark.processes]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ADMIN_PASSWORD = "browser-test-password-4f9"


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_server):
    def add_operator(site):
        site.manage(
            "createsuperuser",
            "--noinput",
            "--username",
            "op",
            "--email",
            "op@example.com",
            env={"DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        )

    with running_site(
        tmp_path_factory.mktemp("browser-site"), redis_server.url, prepare=add_operator, market=True
    ) as site:
        yield site


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"the page raised: {errors}"


def seq_of(page, symbol: str) -> int:
    return int(page.locator(f'tr[data-symbol="{symbol}"]').get_attribute("data-seq") or -1)


def wait_for_seq_above(page, symbol: str, seq: int, timeout_ms: int = 10_000) -> None:
    page.wait_for_function(
        "([symbol, seq]) => Number(document.querySelector(`tr[data-symbol='${symbol}']`).dataset.seq || -1) > seq",
        arg=[symbol, seq],
        timeout=timeout_ms,
    )


def test_prices_change_live_over_websocket(site, page):
    """The dashboard goes live over WebSocket and its price cells keep changing."""
    page.goto(site.base + "/")
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
    expect(page.locator("#badge")).to_contain_text("WebSocket")
    wait_for_seq_above(page, "MSFT", -1)
    first_price = page.locator('tr[data-symbol="MSFT"] .price').text_content()
    first_seq = seq_of(page, "MSFT")
    wait_for_seq_above(page, "MSFT", first_seq + 3)
    assert page.locator('tr[data-symbol="MSFT"] .price').text_content() != "" and first_price
    expect(page.locator("#latency")).to_contain_text("ms", timeout=5_000)


def test_switching_to_polling_keeps_prices_changing(site, page):
    """With the switch on HTTP polling the badge says so and prices still change, fetched by GET /api/quotes/."""
    polls: list[str] = []

    def count_poll(request):
        if request.url.split("?")[0].endswith("/api/quotes/"):
            polls.append(request.url)

    page.on("request", count_poll)
    page.goto(site.base + "/")
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
    page.get_by_label("HTTP polling (1 s)").check()
    expect(page.locator("#badge")).to_have_attribute("data-state", "polling", timeout=5_000)
    polls.clear()
    seq = seq_of(page, "AAPL")
    wait_for_seq_above(page, "AAPL", seq)
    wait_for_seq_above(page, "AAPL", seq_of(page, "AAPL"))
    # The changes came by polling: the WebSocket is closed and GETs were made.
    assert len(polls) >= 2
    expect(page.locator("#badge")).to_contain_text("HTTP polling")


def test_halt_in_admin_shows_on_dashboard_within_two_seconds(site, browser, page):
    """An operator halts a stock in the admin; an open dashboard marks it HALTED within 2 s."""
    page.goto(site.base + "/")
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
    row = page.locator('tr[data-symbol="NFLX"]')
    expect(row).not_to_have_class("halted")

    admin = browser.new_context().new_page()
    admin.goto(site.base + "/admin/ticker/stock/")
    admin.fill("#id_username", "op")
    admin.fill("#id_password", ADMIN_PASSWORD)
    admin.click("input[type=submit]")
    admin.locator('tr:has(th a:text-is("NFLX")) input.action-select').check()
    admin.select_option("select[name=action]", "halt")
    admin.click("button[name=index]")
    expect(admin.locator(".messagelist")).to_contain_text("Halted 1 stock")
    halted_at = time.monotonic()
    expect(row).to_have_class("halted", timeout=2_000)
    expect(row.locator(".halt-tag")).to_have_text("HALTED")
    assert time.monotonic() - halted_at <= 2.0
    admin.context.close()


def test_falls_back_to_sse_when_websocket_is_refused(site, page):
    """Behind a proxy that refuses WebSocket upgrades the page still updates, over SSE, and says so."""
    proxy = NoWebSocketProxy(site.port)
    try:
        page.goto(f"http://127.0.0.1:{proxy.port}/")
        badge = page.locator("#badge")
        expect(badge).to_have_attribute("data-transport", "sse", timeout=15_000)
        expect(badge).to_have_attribute("data-state", "live")
        expect(badge).to_contain_text("Server-Sent Events")
        wait_for_seq_above(page, "AAPL", seq_of(page, "AAPL"))
        wait_for_seq_above(page, "AAPL", seq_of(page, "AAPL"))
        assert proxy.refused >= 1
    finally:
        proxy.close()


@pytest.mark.parametrize("transport, label", [("sse", "Server-Sent Events"), ("longpoll", "long-polling")])
def test_pinned_transport_keeps_prices_changing(site, page, transport, label):
    """?transport=NAME uses just that transport; the badge names it and prices keep changing."""
    page.goto(f"{site.base}/?transport={transport}")
    badge = page.locator("#badge")
    expect(badge).to_have_attribute("data-transport", transport, timeout=10_000)
    expect(badge).to_contain_text(label)
    expect(page.locator(f"input[name=transport][value={transport}]")).to_be_checked()
    wait_for_seq_above(page, "MSFT", seq_of(page, "MSFT"))
    wait_for_seq_above(page, "MSFT", seq_of(page, "MSFT"))


def test_lab_runs_the_four_transports_side_by_side(site, page):
    """/lab/ shows every transport receiving updates with its bytes split by layer, and a real 101 handshake."""
    page.goto(site.base + "/lab/")
    for transport in ("websocket", "sse", "longpoll", "polling"):
        card = page.locator(f'.lab-card[data-transport="{transport}"]')
        page.wait_for_function(
            "(t) => Number(document.querySelector(`.lab-card[data-transport='${t}'] [data-field=updates]`)"
            ".textContent) > 0",
            arg=transport,
            timeout=15_000,
        )
        expect(card.locator("[data-field=latency]")).to_contain_text("ms", timeout=10_000)
        assert float(card.locator("[data-field=payload]").text_content()) > 0
    expect(page.locator("#hs-request")).to_contain_text("Upgrade: websocket")
    expect(page.locator("#hs-response")).to_contain_text("101 Switching Protocols")
    expect(page.locator("#hs-accept")).to_contain_text("checks out")


@pytest.fixture(scope="module")
def fault_site(tmp_path_factory, redis_server):
    """A site of its own, to break: its web and market processes are stopped and started again."""
    with running_site(
        tmp_path_factory.mktemp("browser-faults"), redis_server.url, market=True, env={"TICKER_HEARTBEAT_S": "1"}
    ) as site:
        yield site


def test_market_down_greys_out_the_board_and_says_so(fault_site, page):
    """With the market stopped, the dashboard says the feed is interrupted instead of showing old prices as live."""
    page.goto(fault_site.base + "/")
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
    wait_for_seq_above(page, "AAPL", seq_of(page, "AAPL"))
    banner, board = page.locator("#feed-banner"), page.locator(".board")
    expect(banner).to_be_hidden()

    assert fault_site.stop("market") == 0
    expect(banner).to_be_visible(timeout=6_000)
    expect(banner).to_contain_text("Market feed interrupted")
    expect(board).to_have_class("board stale")

    fault_site.start_market()
    expect(banner).to_be_hidden(timeout=15_000)
    expect(board).to_have_class("board")
    wait_for_seq_above(page, "AAPL", seq_of(page, "AAPL"))


def test_every_page_reconnects_on_its_own_within_10_s_of_a_web_restart(fault_site, browser):
    """The web process restarts: each open dashboard shows the loss, then is live again within 10 s."""
    pages = [browser.new_context().new_page() for _ in range(3)]
    try:
        for page in pages:
            page.goto(fault_site.base + "/")
            expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
            # "live" shows once the socket opens; a transport has proven itself (and reconnects on its
            # own rather than falling back) only once data came through it: wait for a price update.
            wait_for_seq_above(page, "AAPL", seq_of(page, "AAPL"))
        assert fault_site.stop("web") == 0
        for page in pages:
            expect(page.locator("#feed-banner")).to_contain_text("Connection lost", timeout=5_000)
        time.sleep(2)  # down for a while: the pages' retries back off
        fault_site.start_web()  # returns once the new process answers HTTP
        back = time.monotonic()
        for page in pages:
            seq = seq_of(page, "AAPL")
            remaining_ms = max(1, 10_000 - (time.monotonic() - back) * 1000)
            wait_for_seq_above(page, "AAPL", seq, timeout_ms=remaining_ms)
            expect(page.locator("#badge")).to_have_attribute("data-state", "live")
            expect(page.locator("#feed-banner")).to_be_hidden()
        print(f"\nweb restart: every page live again {time.monotonic() - back:.1f} s after the server was back")
    finally:
        for page in pages:
            page.context.close()
