"""The dashboard in a real browser: Playwright driving Debian's Chromium, headless, against real processes.

No fixed sleeps: each test waits for what a user would see (Playwright's expect and wait_for_function), with
bounds generous enough for a loaded 2-core machine; the market steps every 250 ms, so "a few steps" is about a
second.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from .clients import sign_in
from .processes import NoWebSocketProxy, add_operator, running_site, site_fixture

pytestmark = [pytest.mark.browser, pytest.mark.processes]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# The simulated session follows the wall clock (closed 30 s in every 7 minutes by default), and a closed
# market does not move: the sites of tests that wait for prices to move keep it always open.
ALWAYS_OPEN = {"MARKET_SESSION_CLOSED_HOURS": "0"}
# A page that fell back from WebSocket tries it again after this long (30 s by default); short here so the
# upgrade test need not wait half a minute.
UPGRADE_PROBE_S = 3


site = site_fixture(
    scope="module",
    prepare=add_operator,
    market=True,
    env={**ALWAYS_OPEN, "TICKER_UPGRADE_PROBE_S": str(UPGRADE_PROBE_S)},
)


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
    sign_in(admin, site.base + "/admin/ticker/stock/")
    admin.locator('tr:has(th a:text-is("NFLX")) input.action-select').check()
    admin.select_option("select[name=action]", "halt")
    admin.click("button[name=index]")
    expect(admin.locator(".messagelist")).to_contain_text("Halted 1 stock")
    halted_at = time.monotonic()
    expect(row).to_have_class("halted", timeout=2_000)
    expect(row.locator(".halt-tag")).to_have_text("HALTED")
    # The price stays readable: a tag says "halted", the price is not struck through.
    expect(row.locator(".price")).to_have_css("text-decoration-line", "none")
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


def test_a_page_on_sse_moves_back_to_websocket_once_the_proxy_lets_it_through(site, page):
    """The page that fell back to SSE tries WebSocket again on its own and switches without losing an update."""
    proxy = NoWebSocketProxy(site.port)
    try:
        page.goto(f"http://127.0.0.1:{proxy.port}/")
        badge = page.locator("#badge")
        expect(badge).to_have_attribute("data-transport", "sse", timeout=15_000)
        wait_for_seq_above(page, "AAPL", seq_of(page, "AAPL"))
        refused = proxy.refused
        proxy.refusing = False
        # The next probe is due UPGRADE_PROBE_S after SSE went live; it then has to open a socket and get
        # its snapshot. 20 s more covers a loaded 2-core machine many times over.
        expect(badge).to_have_attribute("data-transport", "websocket", timeout=(UPGRADE_PROBE_S + 20) * 1000)
        expect(badge).to_have_attribute("data-state", "live")
        expect(badge).to_contain_text("WebSocket")
        seq = seq_of(page, "AAPL")
        wait_for_seq_above(page, "AAPL", seq)
        # The switch kept the page's prices whole: no gap, and the feed was never reported lost.
        expect(page.locator("#stat-gaps")).to_have_text("0")
        expect(page.locator("#feed-banner")).to_be_hidden()
        assert proxy.refused == refused  # no upgrade was refused after the proxy changed
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


# Each row's figures next to the same symbol's quote from GET /api/quotes/, read in one turn of the page: only rows
# at the API's seq are compared (the market moves every 250 ms).
_ROWS_AGAINST_API = """async () => {
  const api = await (await fetch("/api/quotes/")).json();
  const cell = (tr, name) => tr.querySelector(`.${name}`).textContent;
  return api.quotes.map((quote) => {
    const tr = document.querySelector(`tr[data-symbol="${quote.symbol}"]`);
    if (!tr || Number(tr.dataset.seq) !== quote.seq) return null;
    const shown = {price: cell(tr, "price"), change: cell(tr, "change"), change_pct: Number(tr.dataset.changePct),
                   open: cell(tr, "open"), high: cell(tr, "high"), low: cell(tr, "low")};
    return {symbol: quote.symbol, shown, api: quote};
  }).filter(Boolean);
}"""


def test_the_dashboard_negotiates_compression_and_deltas_and_shows_the_apis_prices(site, page):
    """Chromium's dashboard socket is answered with permessage-deflate (no server context takeover) and the
    delta format, and every row it builds from deltas shows what GET /api/quotes/ says at the same seq."""
    handshakes: list[dict] = []
    cdp = page.context.new_cdp_session(page)
    cdp.on("Network.webSocketHandshakeResponseReceived", lambda event: handshakes.append(event["response"]))
    cdp.send("Network.enable")
    page.goto(site.base + "/")
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
    assert handshakes, "no WebSocket handshake seen"
    headers = {name.lower(): value for name, value in handshakes[0]["headers"].items()}
    assert headers["sec-websocket-protocol"] == "ticker.v2.json"
    extensions = [part.strip() for part in headers["sec-websocket-extensions"].split(";")]
    assert extensions[0] == "permessage-deflate" and "server_no_context_takeover" in extensions
    first = seq_of(page, "AAPL")
    wait_for_seq_above(page, "AAPL", first + 8)  # a couple of seconds of deltas applied on top of the snapshot
    compared: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(compared) < 20 and time.monotonic() < deadline:
        for row in page.evaluate(_ROWS_AGAINST_API):
            quote = row["api"]
            expected = {name: f"{quote[name]:.2f}" for name in ("price", "open", "high", "low")}
            expected["change"] = f"{quote['change']:+.2f}" if quote["change"] else "0.00"
            expected["change_pct"] = quote["change_pct"]
            assert row["shown"] == expected, f"{row['symbol']} at seq {quote['seq']}"
            compared[row["symbol"]] = quote["seq"]
    assert len(compared) >= 20, f"only {len(compared)} rows were at the API's seq within 30 s: {compared}"


# Each row the server rendered next to the same symbol's quote in the page's initial-quotes block (which the
# server sends with the table), read as soon as the page's script has run.
_ROWS_AGAINST_INITIAL = """() => {
  const initial = JSON.parse(document.getElementById("initial-quotes").textContent);
  const cell = (tr, selector) => tr.querySelector(selector).textContent;
  return initial.quotes.map((quote) => {
    const tr = document.querySelector(`tr[data-symbol="${quote.symbol}"]`);
    if (!tr) return null;
    const shown = {price: cell(tr, ".price"), change: cell(tr, ".change"), change_pct: cell(tr, ".change-pct .value"),
                   arrow: cell(tr, ".change-pct .arrow"), open: cell(tr, ".open"), high: cell(tr, ".high"),
                   low: cell(tr, ".low"), volume: cell(tr, ".volume"), seq: Number(tr.dataset.seq),
                   trend: ["up", "down"].filter((name) => tr.querySelector(".change").classList.contains(name))};
    return {symbol: quote.symbol, shown, quote};
  }).filter(Boolean);
}"""


def test_the_first_paint_shows_the_servers_quotes_formatted_before_any_feed(site, page):
    """With every feed held back, the rows the server rendered show its quotes formatted as the feed's are
    (5.20, +0.15, ▲ +1.23%, 1.23M), written by the page's script from the quotes the page carries."""
    page.route_web_socket("**/ws/**", lambda ws: None)  # answered by no server: no frame ever arrives
    page.route("**/api/**", lambda route: route.abort())  # nor any quote over HTTP
    page.goto(site.base + "/", wait_until="domcontentloaded")  # module scripts have run by then
    rows = page.evaluate(_ROWS_AGAINST_INITIAL)
    assert len(rows) >= 20, f"only {len(rows)} rows of the first paint"
    for row in rows:
        quote, shown = row["quote"], row["shown"]
        expected = {name: f"{quote[name]:.2f}" for name in ("price", "open", "high", "low")}
        expected["change"] = f"{quote['change']:+.2f}" if quote["change"] else "0.00"
        expected["change_pct"] = f"{quote['change_pct']:+.2f}%" if quote["change_pct"] else "0.00%"
        expected["arrow"] = "▲" if quote["change"] > 0 else "▼" if quote["change"] < 0 else ""
        expected["trend"] = ["up"] if quote["change"] > 0 else ["down"] if quote["change"] < 0 else []
        expected["seq"] = quote["seq"]
        volume = shown.pop("volume")
        assert shown == expected, row["symbol"]
        # Under 100,000 with thousands separators, above in millions (or billions) with one or two decimals.
        if quote["volume"] < 100_000:
            assert volume == f"{quote['volume']:,}", row["symbol"]
        else:
            assert re.fullmatch(r"[0-9]+\.[0-9]{1,2}[MB]", volume), (row["symbol"], volume)


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
    # The WebSocket card on the delta format with permessage-deflate: each saving shown, measured.
    card = page.locator('.lab-card[data-transport="websocket"]')
    expect(card.locator("[data-field=negotiated]")).to_contain_text("ticker.v2.json")
    expect(card.locator("[data-field=negotiated]")).to_contain_text("permessage-deflate")
    sizes = [
        float(card.locator(f"[data-field={name}]").text_content()) for name in ("deflated", "uncompressed", "whole")
    ]
    assert 0 < sizes[0] < sizes[1] < sizes[2], f"compressed, uncompressed, whole quotes: {sizes}"
    expect(page.locator("#hs-request")).to_contain_text("Upgrade: websocket")
    expect(page.locator("#hs-response")).to_contain_text("101 Switching Protocols")
    expect(page.locator("#hs-accept")).to_contain_text("checks out")


@pytest.fixture(scope="module")
def fault_site(tmp_path_factory, redis_server):
    """A site of its own, to break: its web and market processes are stopped and started again."""
    with running_site(
        tmp_path_factory.mktemp("browser-faults"),
        redis_server.url,
        market=True,
        env={"TICKER_HEARTBEAT_S": "1", **ALWAYS_OPEN},
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
    # Nothing says "live" over prices that are not: the badge, and the chart is greyed out with the table.
    expect(page.locator("#badge")).to_have_attribute("data-state", "interrupted")
    expect(page.locator(".chart-panel")).to_have_css("opacity", "0.55")

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


# --- the market screen ------------------------------------------------------------------------


def row_symbols(page) -> list[str]:
    return page.eval_on_selector_all("#quotes tbody tr[data-symbol]", "trs => trs.map(tr => tr.dataset.symbol)")


def admin_page(browser, site):
    admin = browser.new_context().new_page()
    sign_in(admin, site.base + "/admin/ticker/stock/")
    return admin


def test_a_symbol_listed_in_the_admin_is_found_by_search_and_streams_once_added(site, browser, page):
    """An operator lists a new symbol; an open dashboard finds it by name, adds it from the keyboard, and it streams."""
    page.goto(site.base + "/")
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
    assert "QQQX" not in row_symbols(page)

    admin = admin_page(browser, site)
    admin.goto(site.base + "/admin/ticker/stock/add/")
    admin.fill("#id_symbol", "QQQX")
    admin.fill("#id_name", "Quuxotic Widgets Inc.")
    admin.fill("#id_reference_price", "42.00")
    admin.fill("#id_price", "42.00")
    admin.click("input[name=_save]")
    expect(admin.locator(".messagelist")).to_contain_text("QQQX")
    admin.context.close()

    search = page.locator("#symbol-search")
    search.click()
    search.press_sequentially("quuxotic")
    option = page.locator('#search-results [role=option][data-symbol="QQQX"]')
    expect(option).to_be_visible(timeout=5_000)
    expect(search).to_have_attribute("aria-expanded", "true")
    search.press("Enter")
    row = page.locator('#quotes tr[data-symbol="QQQX"]')
    expect(row).to_be_visible()
    expect(row.locator(".name")).to_have_text("Quuxotic Widgets Inc.")
    # Live without a reload: a first quote, then updates (a new listing is quoted, then moves like any other).
    wait_for_seq_above(page, "QQQX", -1)
    wait_for_seq_above(page, "QQQX", seq_of(page, "QQQX"), timeout_ms=15_000)
    # Kept in this browser: still there after a reload.
    page.reload()
    expect(page.locator('#quotes tr[data-symbol="QQQX"]')).to_be_visible()


def test_removing_a_symbol_unsubscribes_it(site, page):
    """The × button takes a row off the watchlist, and the WebSocket stops following it."""
    with page.expect_websocket() as opened:
        page.goto(site.base + "/")
    socket = opened.value
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
    with socket.expect_event("framesent", predicate=lambda payload: '"unsubscribe"' in payload and '"KO"' in payload):
        page.locator('#quotes tr[data-symbol="KO"] .remove').click()
    expect(page.locator('#quotes tr[data-symbol="KO"]')).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text("Removed KO")


def test_the_candle_chart_updates_live(site, page):
    """The chart draws one-minute candles from the candles endpoint and moves its last candle with each quote."""
    page.goto(site.base + "/")
    chart = page.locator("#chart")
    expect(chart).to_have_attribute("data-symbol", "AAPL", timeout=10_000)
    page.wait_for_function("() => Number(document.getElementById('chart').dataset.candles) > 0", timeout=10_000)
    expect(chart.locator("canvas").first).to_be_visible()
    # The library's attribution stays on: its logo links to TradingView.
    expect(chart.locator('a[href*="tradingview.com"]')).to_have_count(1)
    first = int(chart.get_attribute("data-updates"))
    page.wait_for_function(
        "(n) => Number(document.getElementById('chart').dataset.updates) > n + 2", arg=first, timeout=10_000
    )
    # Picking another symbol charts it.
    page.locator('#quotes tr[data-symbol="MSFT"] .pick').click()
    expect(chart).to_have_attribute("data-symbol", "MSFT")
    page.wait_for_function("() => Number(document.getElementById('chart').dataset.candles) > 0", timeout=10_000)
    expect(page.locator("#chart-symbol")).to_have_text("MSFT")


SORTED = """([direction]) => {
  const values = [...document.querySelectorAll('#quotes tbody tr[data-symbol]')]
    .map(tr => Number(tr.dataset.changePct));
  if (values.some(Number.isNaN)) return false;
  return values.every((v, i) => i === 0 || (direction === 'descending' ? values[i - 1] >= v : values[i - 1] <= v));
}"""


def test_sorting_by_change_pct(site, page):
    """The Chg % header sorts the rows largest first, then smallest first (also from the keyboard), then unsorted."""
    page.goto(site.base + "/")
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
    header = page.locator('#quotes th[data-sort="change_pct"]')
    header.locator("button").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    # The table re-sorts with every change (tests/test_screen.py samples it over 10 s).
    page.wait_for_function(SORTED, arg=["descending"], timeout=5_000)
    header.locator("button").press("Enter")
    expect(header).to_have_attribute("aria-sort", "ascending")
    page.wait_for_function(SORTED, arg=["ascending"], timeout=5_000)
    page.reload()  # the sort is remembered
    expect(page.locator('#quotes th[data-sort="change_pct"]')).to_have_attribute("aria-sort", "ascending")
    page.locator('#quotes th[data-sort="change_pct"] button').click()
    expect(page.locator('#quotes th[data-sort="change_pct"]')).to_have_attribute("aria-sort", "none")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_movers_update(site, page, transport):
    """The whole market's top gainers and losers fill in and change live, pushed or polled."""
    page.goto(f"{site.base}/?transport={transport}")
    movers = page.locator("#movers")
    page.wait_for_function("() => document.querySelectorAll('#gainers li').length > 0", timeout=10_000)
    expect(page.locator("#losers li").first).to_be_visible()
    expect(page.locator("#movers-listed")).to_contain_text("listed")
    step = int(movers.get_attribute("data-step"))
    page.wait_for_function(
        "(step) => Number(document.getElementById('movers').dataset.step) > step", arg=step, timeout=10_000
    )
    # Colour is never the only signal: each change carries its sign and an arrow.
    text = page.locator("#gainers li .change-pct").first.text_content()
    assert text[0] in "▲▼" or text.startswith("0.00"), text


def test_watchlist_only_hides_the_movers_and_is_remembered(site, page):
    """'Watchlist only' shows just the watchlist and its chart, across a reload."""
    page.goto(site.base + "/")
    page.wait_for_function("() => document.querySelectorAll('#gainers li').length > 0", timeout=10_000)
    page.get_by_label("Watchlist only").check()
    expect(page.locator("#movers")).to_be_hidden()
    page.reload()
    expect(page.get_by_label("Watchlist only")).to_be_checked()
    expect(page.locator("#movers")).to_be_hidden()
    page.get_by_label("Watchlist only").uncheck()
    page.wait_for_function("() => document.querySelectorAll('#gainers li').length > 0", timeout=10_000)


def test_a_phone_sees_the_whole_screen_without_sideways_scroll(site, browser):
    """At 390 x 844 the page is no wider than the screen, the chart sits below the table, and labels do not break."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(site.base + "/")
        expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
        page.wait_for_function("() => Number(document.getElementById('chart').dataset.candles) > 0", timeout=10_000)
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"the page is {widths[0]} px wide on a {widths[1]} px screen"
        table = page.locator("#quotes").bounding_box()
        chart = page.locator(".chart-panel").bounding_box()
        assert chart["y"] >= table["y"] + table["height"], "the chart goes below the table"
        assert table["x"] + table["width"] <= 390
        # "Long-poll" stays on one line.
        heights = page.eval_on_selector_all(".switch label", "ls => ls.map(l => l.getBoundingClientRect().height)")
        assert max(heights) < 2 * min(heights), heights
        # The essentials stay: symbol, last price and change %, with its sign.
        expect(page.locator('#quotes tr[data-symbol="AAPL"] .price')).to_be_visible()
        expect(page.locator('#quotes tr[data-symbol="AAPL"] .change-pct')).to_be_visible()
    finally:
        context.close()


def test_no_column_of_the_table_is_cut_off_at_common_desktop_widths(site, browser):
    """From a small laptop to a wide screen, the table fits its panel: secondary columns go before any is cut."""
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    page = context.new_page()
    try:
        page.goto(site.base + "/")
        expect(page.locator('#quotes tr[data-symbol="AAPL"]')).to_be_visible(timeout=10_000)
        for width in (1024, 1280, 1366, 1440, 1536, 1920):
            page.set_viewport_size({"width": width, "height": 800})
            scroll, client = page.evaluate(
                "(() => { const t = document.querySelector('.table-wrap'); return [t.scrollWidth, t.clientWidth]; })()"
            )
            assert scroll <= client, f"at {width} px the table is {scroll} px wide in a {client} px panel"
            expect(page.locator('#quotes tr[data-symbol="AAPL"] .trend-col')).to_be_visible()
    finally:
        context.close()


def test_favicon_is_served(site, page):
    """/favicon.ico answers (a redirect to the static icon), and pages link the icon."""
    response = page.request.get(site.base + "/favicon.ico")
    assert response.status == 200 and "svg" in response.headers["content-type"]
    page.goto(site.base + "/lab/")
    assert page.locator('link[rel="icon"]').get_attribute("href").endswith(".svg")


def test_lab_shows_the_servers_refusal_of_an_unknown_symbol(site, page):
    """On the Lab an unknown symbol shows the server's message on every card; the HTTP cards stop asking."""
    page.goto(site.base + "/lab/")
    page.fill("#lab-symbols", "AAPL,NOPE")
    page.click("#lab-form button[type=submit]")
    for transport in ("websocket", "sse", "longpoll", "polling"):
        error = page.locator(f'.lab-card[data-transport="{transport}"] [data-field=error]')
        expect(error).to_contain_text("Unknown symbol(s): NOPE", timeout=10_000)
    # The WebSocket card goes on with AAPL: a clock for "a few seconds later" without a sleep (the cards'
    # figures are redrawn every 0.5 s, so read them once a redraw has surely passed).
    ws_updates = "document.querySelector(`.lab-card[data-transport='websocket'] [data-field=updates]`).textContent"

    def wait_a_few_steps():
        start = page.evaluate(f"Number({ws_updates})")
        page.wait_for_function(f"(n) => Number({ws_updates}) >= n + 6", arg=start, timeout=15_000)

    wait_a_few_steps()
    requests = {
        t: int(page.locator(f'.lab-card[data-transport="{t}"] [data-field=requests]').text_content())
        for t in ("sse", "longpoll", "polling")
    }
    wait_a_few_steps()
    for transport, count in requests.items():
        card = page.locator(f'.lab-card[data-transport="{transport}"]')
        assert int(card.locator("[data-field=requests]").text_content()) == count, f"{transport} kept retrying"
        expect(card.locator("[data-field=state]")).to_have_attribute("data-state", "error")


@pytest.mark.parametrize("transport, symbol", [("websocket", "WMT"), ("sse", "PEP"), ("polling", "PG")])
def test_a_symbol_delisted_in_the_admin_leaves_the_watchlist_with_a_notice(site, browser, page, transport, symbol):
    """The operator deactivates a stock: an open dashboard drops its row and says why, on every transport."""
    page.goto(f"{site.base}/?transport={transport}")
    row = page.locator(f'#quotes tr[data-symbol="{symbol}"]')
    wait_for_seq_above(page, symbol, -1)
    admin = admin_page(browser, site)
    admin.goto(f"{site.base}/admin/ticker/stock/?q={symbol}")
    admin.locator(f'th a:text-is("{symbol}")').click()
    admin.locator("#id_active").uncheck()
    admin.click("input[name=_save]")
    expect(admin.locator(".messagelist")).to_contain_text(symbol)
    admin.context.close()
    expect(row).to_have_count(0, timeout=10_000)
    expect(page.locator("#notice")).to_contain_text(f"{symbol} is no longer listed")
    # The rest streams on.
    wait_for_seq_above(page, "AAPL", seq_of(page, "AAPL"))


def test_the_session_is_shown_as_it_opens_and_closes(tmp_path_factory, redis_server, browser):
    """The page says whether the market is open, and until when, and follows each change live."""
    # At 60 times real time: 4 s open, 4 s closed; heartbeats (which carry the session) every second.
    short = {"MARKET_SESSION_OPEN_HOURS": "0.0667", "MARKET_SESSION_CLOSED_HOURS": "0.0667", "TICKER_HEARTBEAT_S": "1"}
    with running_site(tmp_path_factory.mktemp("browser-session"), redis_server.url, market=True, env=short) as site:
        page = browser.new_context().new_page()
        try:
            page.goto(site.base + "/")
            session = page.locator("#session")
            for state, text in (("open", "Market open · closes in"), ("closed", "Market closed · opens in")):
                expect(session).to_have_attribute("data-state", state, timeout=10_000)
                expect(session).to_contain_text(text)
        finally:
            page.context.close()


# --- an exchange-sized market -------------------------------------------------------------------

FIRST_LOAD_BYTES = 300_000


@pytest.fixture(scope="module")
def big_site(tmp_path_factory, redis_server):
    """A site with 5,000 listed symbols (manage.py seed_symbols), its market running."""

    def seed(site):
        site.manage("seed_symbols", "--total", "5000")

    # DJANGO_DEBUG=1 as the run command (scripts/run) sets it: static files then come from the source folders,
    # not collectstatic's gzipped copies, and the first load must stay small there too (issue 20).
    with running_site(
        tmp_path_factory.mktemp("browser-5000"),
        redis_server.url,
        prepare=seed,
        market=True,
        env={**ALWAYS_OPEN, "DJANGO_DEBUG": "1"},
    ) as site:
        yield site


def test_with_5000_symbols_the_first_load_is_small_and_live_within_2_s_and_search_finds_any(big_site, page):
    """5,000 listed, under the run command's settings: the first load transfers under 300 KB (headers and encoded
    bodies of every request, and the WebSocket's frames) and shows live prices within 2 s; search finds any symbol."""
    # A site that is up has its hub: the web process's first connection loads the whole market from the
    # database (QuoteHub.ready), a cost paid once per process, not by each page. A long-poll pays it here.
    assert page.request.get(big_site.base + "/api/quotes/?since=0&wait=0").ok
    received: list[int] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: received.append(len(payload))))
    finished = []
    page.on("requestfinished", lambda request: finished.append(request))
    with page.expect_response(lambda r: "/api/quotes/sparklines/" in r.url, timeout=10_000):
        page.goto(big_site.base + "/")
    page.wait_for_function("() => performance.getEntriesByName('ticker:first-quotes').length > 0", timeout=10_000)
    first_quotes_ms = page.evaluate("performance.getEntriesByName('ticker:first-quotes')[0].startTime")
    page.wait_for_function("() => Number(document.getElementById('chart').dataset.candles) > 0", timeout=10_000)
    http = 0
    for request in finished:
        sizes = request.sizes()
        http += sizes["requestHeadersSize"] + sizes["responseHeadersSize"] + sizes["responseBodySize"]
    total = http + sum(received)
    print(f"\n5,000 symbols: first quotes at {first_quotes_ms:.0f} ms, first load {total:,} bytes ({http:,} over HTTP)")
    assert first_quotes_ms <= 2_000
    assert total < FIRST_LOAD_BYTES
    assert len(row_symbols(page)) == 30, "the page shows the default watchlist, not the market"

    # Any listed symbol is found, by symbol and by name: the last one generated, for one.
    last = big_site.manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from ticker.models import Stock; s = Stock.objects.filter(active=True).order_by('-id')[0]; "
        "print(s.symbol); print(s.name)",
    ).split("\n")
    symbol, name = last[0].strip(), last[1].strip()
    search = page.locator("#symbol-search")
    for text in (symbol.lower(), name):
        search.fill(text)
        expect(page.locator(f'#search-results [role=option][data-symbol="{symbol}"]')).to_be_visible(timeout=5_000)
