"""The HTTP polling baseline, history and dashboard."""

import json

import pytest

from ticker.market import services
from ticker.models import Stock

QUOTE_KEYS = {
    "symbol",
    "price",
    "prev_close",
    "change",
    "change_pct",
    "open",
    "high",
    "low",
    "volume",
    "seq",
    "ts",
    "halted",
}


def test_quotes_have_the_documented_format(client, traded):
    """GET /api/quotes/ returns step and every active quote with the documented fields."""
    response = client.get("/api/quotes/")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["step"] == 5
    assert [q["symbol"] for q in body["quotes"]] == ["AAA", "BBB", "CCC"]
    for quote in body["quotes"]:
        assert set(quote) == QUOTE_KEYS
        stock = Stock.objects.get(symbol=quote["symbol"])
        assert quote["price"] == float(stock.price) and quote["seq"] == stock.seq
        assert quote["change"] == float(stock.price - stock.reference_price)
        assert quote["prev_close"] == float(stock.reference_price)
        assert quote["low"] <= quote["price"] <= quote["high"] and isinstance(quote["volume"], int)
    assert body["session"]["state"] in ("open", "closed") and isinstance(body["session"]["until"], int)


def test_symbols_filter(client, traded):
    """?symbols=A,B returns just those, case-insensitively."""
    body = client.get("/api/quotes/?symbols=ccc,AAA").json()
    assert [q["symbol"] for q in body["quotes"]] == ["AAA", "CCC"]


def test_unknown_symbol_is_a_400_with_a_json_error(client, traded):
    """An unknown symbol is named in a JSON error, not silently dropped."""
    response = client.get("/api/quotes/?symbols=AAA,NOPE")
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "code": "unknown_symbol",
        "message": "Unknown symbol(s): NOPE.",
        "symbols": ["NOPE"],
    }


def test_too_many_symbols_is_a_400(client, traded):
    """A symbol list over the cap is refused."""
    response = client.get("/api/quotes/?symbols=" + ",".join(f"S{i}" for i in range(101)))
    assert response.status_code == 400 and response.json()["code"] == "too_many_symbols"


def test_etag_gives_304_until_a_price_changes(client, traded):
    """If-None-Match with the current ETag is a 304; after a step it is a 200 with a new ETag."""
    first = client.get("/api/quotes/")
    etag = first["ETag"]
    again = client.get("/api/quotes/", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    while not services.market_step(market=traded, ts=2_000_000_000_000).ticks:
        pass
    changed = client.get("/api/quotes/", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed["ETag"] != etag


def test_etag_of_a_quiet_symbol_survives_other_changes(client, traded):
    """A filtered poll of a halted symbol keeps getting 304 while others trade."""
    Stock.objects.filter(symbol="AAA").update(halted=True)
    services.market_step(market=traded, ts=1)
    etag = client.get("/api/quotes/?symbols=AAA")["ETag"]
    for i in range(5):
        services.market_step(market=traded, ts=2 + i)
    assert client.get("/api/quotes/?symbols=AAA", headers={"If-None-Match": etag}).status_code == 304


@pytest.fixture
def minutes(stocks):
    """Five minutes of trading from ts 0: four finished candles per symbol and the current one."""
    market = services.market_open(interval_ms=250, seed=1)
    for i in range(5 * 6):
        services.market_step(market=market, ts=i * 10_000)
    return market


def test_history_is_the_minute_closes_oldest_first_and_limited(client, minutes):
    """History is the last N one-minute closes, oldest first, the current price last."""
    body = client.get("/api/quotes/aaa/history/?limit=3").json()
    assert body["symbol"] == "AAA"
    assert [p["ts"] for p in body["points"]] == [120_000, 180_000, 240_000]
    assert body["points"][-1]["price"] == float(Stock.objects.get(symbol="AAA").price)


def test_candles_are_oldest_first_with_the_current_minute_last(client, minutes):
    """/candles/ gives finished candles then the current one, times in epoch seconds, limit respected."""
    response = client.get("/api/quotes/aaa/candles/")
    assert response.status_code == 200
    body = response.json()
    assert body["symbol"] == "AAA" and body["interval_s"] == 60
    assert [c["time"] for c in body["candles"]] == [0, 60, 120, 180, 240]
    stock = Stock.objects.get(symbol="AAA")
    last = body["candles"][-1]
    assert last["close"] == float(stock.price) and last["volume"] == stock.candle_volume
    for candle in body["candles"]:
        assert set(candle) == {"time", "open", "high", "low", "close", "volume"}
        assert candle["low"] <= min(candle["open"], candle["close"]) <= candle["high"]
    assert sum(c["volume"] for c in body["candles"]) == stock.volume
    assert [c["time"] for c in client.get("/api/quotes/AAA/candles/?limit=2").json()["candles"]] == [180, 240]


def test_sparklines_answer_a_whole_watchlist_at_once(client, minutes):
    """/sparklines/ gives each named symbol's minute closes, the current price last, in one answer."""
    body = client.get("/api/quotes/sparklines/?symbols=ccc,AAA").json()
    assert set(body["sparklines"]) == {"AAA", "CCC"}
    assert len(body["sparklines"]["AAA"]) == 5
    assert body["sparklines"]["CCC"][-1] == float(Stock.objects.get(symbol="CCC").price)
    closes = client.get("/api/quotes/AAA/candles/").json()["candles"]
    assert body["sparklines"]["AAA"] == [c["close"] for c in closes]


def test_sparklines_refuse_unknown_and_missing_symbols(client, minutes):
    """Unknown symbols are a 400 unknown_symbol naming them; no symbols at all is bad_symbols."""
    response = client.get("/api/quotes/sparklines/?symbols=AAA,NOPE")
    assert response.status_code == 400 and response.json()["symbols"] == ["NOPE"]
    assert client.get("/api/quotes/sparklines/").json()["code"] == "bad_symbols"


def test_symbol_search_puts_symbol_prefixes_first_then_names(client, db):
    """/api/symbols/ finds listed symbols by prefix (first, by symbol), then by name, case-insensitively."""
    services.seed_symbols(total=100)
    Stock.objects.create(symbol="MAX", name="Maximal Co.", price="5.00", reference_price="5.00")
    Stock.objects.create(symbol="ZZ", name="Mastered Co.", price="5.00", reference_price="5.00", active=False)
    results = client.get("/api/symbols/?q=ma").json()["results"]
    symbols = [r["symbol"] for r in results]
    assert symbols[:2] == ["MA", "MAX"]
    assert "ZZ" not in symbols  # not listed
    assert {"symbol": "MA", "name": "Mastercard Inc.", "sector": "Financials"} in results
    assert all("ma" in r["name"].lower() for r in results[2:]) and len(results) > 2
    by_name = client.get("/api/symbols/?q=simulated co. 004&limit=5").json()["results"]
    assert [r["symbol"] for r in by_name] == [f"SIM00{n}" for n in range(40, 45)]


def test_a_stock_listed_in_the_admin_is_found_at_once(client, db):
    """Search reads the database: a new listing is found without waiting for the market."""
    Stock.objects.create(symbol="FRESH", name="Fresh Listing Co.", price="5.00", reference_price="5.00")
    assert client.get("/api/symbols/?q=fresh").json()["results"][0]["symbol"] == "FRESH"


@pytest.mark.parametrize("limit", ["0", "x", "100000"])
def test_history_bad_limit_is_a_400(client, traded, limit):
    """A limit out of range is a JSON 400."""
    response = client.get(f"/api/quotes/AAA/history/?limit={limit}")
    assert response.status_code == 400 and response.json()["code"] == "bad_limit"


def test_history_follows_how_much_the_market_keeps(client, traded, settings):
    """The chart's request (no limit) works when the market keeps fewer minutes than its default; more is refused."""
    settings.MARKET_CANDLE_MINUTES = 100
    assert client.get("/api/quotes/AAA/history/").status_code == 200
    response = client.get("/api/quotes/AAA/history/?limit=101")
    assert response.status_code == 400 and "from 1 to 100" in response.json()["message"]


def test_history_of_unknown_symbol_is_a_404(client, traded):
    """An unknown symbol's history is a JSON 404."""
    response = client.get("/api/quotes/NOPE/history/")
    assert response.status_code == 404 and response.json()["code"] == "unknown_symbol"


@pytest.mark.parametrize("path", ["/api/quotes/AAA/", "/api/nothing/", "/api/", "/api/quotes/AAA/history/x/"])
def test_every_unknown_api_path_is_a_json_404(client, traded, path):
    """A path under /api/ that no endpoint answers gets the API's JSON error, not Django's HTML page."""
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found" and "docs/protocol.md" in response.json()["message"]


def test_an_api_path_without_its_slash_is_redirected_to_the_endpoint(client, traded):
    """/api/symbols?q=A still reaches /api/symbols/ (as APPEND_SLASH did before the JSON 404 route)."""
    response = client.get("/api/symbols?q=A")
    assert response.status_code == 301 and response["Location"] == "/api/symbols/?q=A"


def json_script(html: str, element_id: str):
    """The data of a page's json_script block."""
    opening = f'<script id="{element_id}" type="application/json">'
    start = html.index(opening) + len(opening)
    return json.loads(html[start : html.index("</script>", start)])


def test_dashboard_renders_the_first_table_on_the_server(client, traded):
    """The first paint has every symbol's row with its price as the quote has it, and the quotes for the script,
    which formats them (test_browser.py, the first paint's figures)."""
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    for stock in Stock.objects.all():
        row = html[html.index(f'<tr data-symbol="{stock.symbol}"') :]
        assert f'<td class="num price">{float(stock.price)}</td>' in row[: row.index("</tr>")]
    assert "Simulated prices" in html
    initial = json_script(html, "initial-quotes")
    assert {q["symbol"]: q["price"] for q in initial["quotes"]} == {
        stock.symbol: float(stock.price) for stock in Stock.objects.all()
    }
    assert '<script type="module"' in html


@pytest.mark.parametrize("path", ["/", "/lab/"])
def test_pages_hand_the_browser_its_settings(client, traded, settings, path):
    """Dashboard and Lab carry the silence timeout, history length, upgrade interval and compression threshold
    from settings."""
    settings.TICKER_CLIENT_SILENCE_S = 7.5
    settings.MARKET_HISTORY_STEPS = 1200
    settings.TICKER_UPGRADE_PROBE_S = 3.0
    settings.TICKER_WS_COMPRESS_MIN_BYTES = 512
    response = client.get(path)
    assert response.status_code == 200
    config = json_script(response.content.decode(), "ticker-config")
    assert config == {"silence_s": 7.5, "history_steps": 1200, "upgrade_probe_s": 3.0, "compress_min_bytes": 512}


API = [
    "/api/quotes/",
    "/api/quotes/?since=0&wait=0",
    "/api/quotes/stream/",
    "/api/quotes/AAA/history/",
    "/api/quotes/AAA/candles/",
    "/api/quotes/sparklines/?symbols=AAA",
    "/api/symbols/?q=a",
    "/api/movers/",
    "/api/lab/handshake/",
]


@pytest.mark.parametrize("path", API)
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options", "trace"])
def test_other_methods_are_a_json_405_naming_the_allowed_ones(client, traded, path, method):
    """The API only reads: any method but GET and HEAD is a 405 with Allow and the JSON error, never CSRF's page."""
    csrf_checked = type(client)(enforce_csrf_checks=True)  # as a browser or script without a CSRF token meets it
    response = getattr(csrf_checked, method)(path)
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["type"] == "error" and body["code"] == "method_not_allowed"
    assert body["message"] == f"{method.upper()} is not allowed here: this endpoint only reads (GET, HEAD)."


@pytest.mark.parametrize("path", ["/", "/lab/"])
def test_pages_answer_get_and_head_and_refuse_the_rest_with_405(client, traded, path):
    """The pages change nothing either: HEAD is answered, a POST is a 405 with Allow (not the CSRF page)."""
    assert client.head(path).status_code == 200
    response = type(client)(enforce_csrf_checks=True).post(path)
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"


def test_head_is_answered_like_get(client, traded):
    """HEAD on the polling endpoint has GET's status and headers."""
    get, head = client.get("/api/quotes/"), client.head("/api/quotes/")
    assert head.status_code == 200 and head["ETag"] == get["ETag"] and head.content == b""


def test_a_weak_or_star_if_none_match_is_a_304(client, traded):
    """If-None-Match compares weakly (a proxy's W/"..." matches) and "*" matches any current answer."""
    etag = client.get("/api/quotes/")["ETag"]
    for header in (f"W/{etag}", "*", f'"other", W/{etag}'):
        response = client.get("/api/quotes/", headers={"If-None-Match": header})
        assert response.status_code == 304 and response["ETag"] == etag, header
    assert client.get("/api/quotes/", headers={"If-None-Match": 'W/"other"'}).status_code == 200


def test_error_messages_quote_bad_input_briefly(client, traded):
    """A 5,000-character symbol is quoted by its first 40 characters in the message; the list keeps it whole."""
    response = client.get("/api/quotes/?symbols=" + "X" * 5000)
    body = response.json()
    assert response.status_code == 400 and body["message"] == f"Unknown symbol(s): {'X' * 40}…."
    assert body["symbols"] == ["X" * 5000]
    many = client.get("/api/quotes/?symbols=" + ",".join(f"N{i}" for i in range(30))).json()
    assert many["message"] == f"Unknown symbol(s): {', '.join(sorted(f'N{i}' for i in range(30))[:10])} and 20 more."
    assert len(many["symbols"]) == 30


def test_security_headers_are_set(client, traded):
    """Pages forbid sniffing and framing, and a CSP allows only the site's own scripts."""
    response = client.get("/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_hsts_is_sent_over_https_only(client, traded, settings):
    """Strict-Transport-Security goes out on HTTPS responses, never on plain HTTP."""
    settings.SECURE_HSTS_SECONDS = 31_536_000
    assert "Strict-Transport-Security" not in client.get("/api/quotes/")
    assert client.get("/api/quotes/", secure=True)["Strict-Transport-Security"].startswith("max-age=31536000")


MANY = ",".join(f"S{i}" for i in range(101))


@pytest.mark.parametrize(
    "path, status, code",
    [
        # Polling.
        ("/api/quotes/?symbols=,", 400, "bad_symbols"),
        ("/api/quotes/?symbols=*,AAA", 400, "bad_symbols"),
        ("/api/quotes/?symbols=AAA,%00", 400, "unknown_symbol"),  # PostgreSQL refuses NUL: never sent to it
        pytest.param("/api/quotes/?symbols=" + "X" * 5000, 400, "unknown_symbol", id="5000-character-symbol"),
        # Long-polling: bad values are refused before anything waits.
        ("/api/quotes/?since=%C2%B2", 400, "bad_since"),  # "²" is a digit to str.isdigit(), not to int()
        # Past int()'s 4300-digit limit.
        pytest.param("/api/quotes/?since=" + "9" * 5000, 400, "bad_since", id="since-of-5000-digits"),
        ("/api/quotes/?since=1.5", 400, "bad_since"),
        ("/api/quotes/?since=", 400, "bad_since"),
        ("/api/quotes/?since=0&wait=", 400, "bad_wait"),
        ("/api/quotes/?since=0&wait=-inf", 400, "bad_wait"),
        ("/api/quotes/?since=0&symbols=,", 400, "bad_symbols"),
        pytest.param("/api/quotes/?since=0&symbols=" + MANY, 400, "too_many_symbols", id="long-poll-101-symbols"),
        # Server-Sent Events.
        ("/api/quotes/stream/?symbols=*,AAA", 400, "bad_symbols"),
        pytest.param("/api/quotes/stream/?symbols=" + MANY, 400, "too_many_symbols", id="stream-101-symbols"),
        # History.
        ("/api/quotes/%00/history/", 404, "unknown_symbol"),
        ("/api/quotes/AAA/history/?limit=", 400, "bad_limit"),
        ("/api/quotes/AAA/history/?limit=1.5", 400, "bad_limit"),
        ("/api/quotes/AAA/history/?limit=%C2%B2", 400, "bad_limit"),
        # Candles, sparklines, search.
        ("/api/quotes/NOPE/candles/", 404, "unknown_symbol"),
        ("/api/quotes/%00/candles/", 404, "unknown_symbol"),
        ("/api/quotes/AAA/candles/?limit=0", 400, "bad_limit"),
        ("/api/quotes/AAA/candles/?limit=241", 400, "bad_limit"),
        ("/api/quotes/sparklines/?symbols=,", 400, "bad_symbols"),
        ("/api/quotes/sparklines/?symbols=AAA,%00", 400, "unknown_symbol"),
        pytest.param("/api/quotes/sparklines/?symbols=" + MANY, 400, "too_many_symbols", id="sparklines-101"),
        ("/api/symbols/", 400, "bad_query"),
        ("/api/symbols/?q=", 400, "bad_query"),
        ("/api/symbols/?q=%00", 400, "bad_query"),
        pytest.param("/api/symbols/?q=" + "a" * 41, 400, "bad_query", id="query-of-41"),
        ("/api/symbols/?q=a&limit=51", 400, "bad_limit"),
        ("/api/symbols/?q=a&limit=x", 400, "bad_limit"),
    ],
)
def test_bad_parameters_get_a_json_error_naming_the_problem(client, traded, path, status, code):
    """Every bad query parameter is answered with its status and one JSON error shape, never a 500."""
    response = client.get(path)
    assert response.status_code == status and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["type"] == "error" and body["code"] == code and body["message"]


@pytest.mark.parametrize("last_id", ["x", "-1", "\u00b2", pytest.param("9" * 5000, id="5000-digits")])
def test_sse_bad_last_event_id_is_a_400(client, traded, last_id):
    """A Last-Event-ID that is not a market step is refused before the stream starts."""
    response = client.get("/api/quotes/stream/", headers={"Last-Event-ID": last_id})
    assert response.status_code == 400 and response.json()["code"] == "bad_last_event_id"


def test_empty_symbols_parameter_means_all(client, traded):
    """?symbols= with nothing in it is the same as no filter, as documented."""
    body = client.get("/api/quotes/?symbols=").json()
    assert [q["symbol"] for q in body["quotes"]] == ["AAA", "BBB", "CCC"]
