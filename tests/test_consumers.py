"""/ws/quotes/ against the real Redis channel layer: the consumer, the hub and the market's batches."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings

from config.asgi import application
from ticker.market import services
from ticker.market.loop import publish
from ticker.models import Stock

from .clients import recv_data, recv_until
from .conftest import quotes_group_key

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
# What a page of http://127.0.0.1 sends with its handshake: the Host it asks for, and its own Origin.
HOST = (b"host", b"127.0.0.1")
ORIGIN = (b"origin", b"http://127.0.0.1")
HANDSHAKE = [HOST, ORIGIN]


async def step(market, *, until: set[str] | None = None):
    """Run market steps (stored and published through Redis) until one changes all of ``until``."""
    for _ in range(100):
        result = await database_sync_to_async(services.market_step)(market=market, ts=1)
        await publish(get_channel_layer(), result)
        if not until or until <= {t.symbol for t in result.ticks}:
            return result
    raise AssertionError(f"no step changed {until}")


async def connect(*headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/quotes/", headers=list(headers) or HANDSHAKE)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def send(communicator, message) -> None:
    await communicator.send_to(text_data=json.dumps(message))


async def receive(communicator) -> dict:
    """The next frame, heartbeats skipped (they come every few seconds; test_reliability covers them)."""
    return await recv_data(communicator, 3)


async def test_subscribe_answers_with_a_snapshot(market):
    """A subscribe is answered by a snapshot of exactly those symbols."""
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["BBB", "aaa"]})
    frame = await receive(ws)
    assert frame["type"] == "snapshot"
    assert [q["symbol"] for q in frame["quotes"]] == ["AAA", "BBB"]
    assert set(frame["quotes"][0]) == {
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
    assert frame["session"]["state"] in ("open", "closed")
    await ws.disconnect()


async def test_batches_hold_only_subscribed_symbols_and_continue_seq(market):
    """After the snapshot, each step brings one frame with the subscribed symbols that changed, seq +1."""
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["AAA", "BBB"]})
    seq = {q["symbol"]: q["seq"] for q in (await receive(ws))["quotes"]}
    checked = 0
    for _ in range(100):
        result = await step(market)
        expected = sorted(t.symbol for t in result.ticks if t.symbol in ("AAA", "BBB"))
        if not expected:
            continue  # it sends this client nothing: a frame sent anyway fails the next step's check, or the last
        frame = await receive(ws)
        assert frame["type"] == "quotes" and frame["step"] == result.step
        assert [q["symbol"] for q in frame["quotes"]] == expected
        for quote in frame["quotes"]:
            assert quote["seq"] == seq[quote["symbol"]] + 1
            seq[quote["symbol"]] = quote["seq"]
        checked += 1
        if checked == 5:
            break
    assert checked == 5, "five steps that moved a subscribed symbol"
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_star_subscribes_to_everything(market):
    """["*"] gets a snapshot of every symbol and every change."""
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["*"]})
    assert [q["symbol"] for q in (await receive(ws))["quotes"]] == ["AAA", "BBB", "CCC"]
    result = await step(market, until={"AAA", "BBB", "CCC"})
    frame = await receive(ws)
    assert [q["symbol"] for q in frame["quotes"]] == ["AAA", "BBB", "CCC"] and frame["step"] == result.step
    await ws.disconnect()


async def test_unsubscribe_stops_updates(market):
    """After unsubscribing a symbol no more of its quotes arrive."""
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["AAA", "BBB"]})
    await receive(ws)
    await send(ws, {"action": "unsubscribe", "symbols": ["AAA"]})
    assert await receive(ws) == {"type": "unsubscribed", "symbols": ["AAA"]}
    await step(market, until={"AAA", "BBB"})
    frame = await receive(ws)
    assert [q["symbol"] for q in frame["quotes"]] == ["BBB"]
    await send(ws, {"action": "unsubscribe", "symbols": ["*"]})
    assert (await receive(ws))["type"] == "unsubscribed"
    await step(market, until={"AAA", "BBB"})
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


@pytest.mark.parametrize(
    "text, code",
    [("not json", "bad_json"), ('{"action": "dance"}', "unknown_action"), ("[]", "bad_message")],
)
async def test_bad_input_gets_an_error_and_the_socket_stays_open(market, text, code):
    """Malformed JSON or an unknown action is answered with an error frame; ping still works after."""
    ws = await connect()
    await ws.send_to(text_data=text)
    frame = await receive(ws)
    assert frame["type"] == "error" and frame["code"] == code and frame["message"]
    await send(ws, {"action": "ping"})
    assert (await receive(ws))["type"] == "pong"
    await ws.disconnect()


async def test_unknown_symbol_is_an_error_but_known_ones_are_subscribed(market):
    """A subscribe naming an unknown symbol subscribes the known ones and names the unknown one."""
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["AAA", "NOPE"]})
    snapshot = await receive(ws)
    assert [q["symbol"] for q in snapshot["quotes"]] == ["AAA"]
    error = await receive(ws)
    assert error["code"] == "unknown_symbol" and error["symbols"] == ["NOPE"]
    await step(market, until={"AAA"})
    assert (await receive(ws))["type"] == "quotes"
    await ws.disconnect()


async def opens(*headers: tuple[bytes, bytes]) -> bool:
    """Whether a handshake with these headers opens the feed."""
    communicator = WebsocketCommunicator(application, "/ws/quotes/", headers=list(headers))
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return connected


async def test_foreign_origin_is_refused(market):
    """A page from another site cannot open the feed with the visitor's cookies."""
    assert not await opens(HOST, (b"origin", b"http://evil.example"))


async def test_an_origin_on_another_port_is_refused(market):
    """Another port is another site (Django's CSRF rule): a page on 127.0.0.1:9999 may not read 127.0.0.1:8000."""
    assert await opens((b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000"))
    assert not await opens((b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:9999"))
    assert not await opens((b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1"))


async def test_a_handshake_without_origin_is_accepted(market):
    """Browsers always send Origin on a WebSocket; a program that sends none is let in, as over SSE and long-poll."""
    assert await opens(HOST)


async def test_one_process_holds_one_group_member_for_many_sockets(market, redis_server):
    """Ten sockets in one process cost one channel in the quotes group, not ten."""
    sockets = [await connect() for _ in range(10)]
    for ws in sockets:
        await send(ws, {"action": "subscribe", "symbols": ["*"]})
        await receive(ws)
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    members = redis_server.client().zrange(quotes_group_key(prefix), 0, -1)
    assert len(members) == 1
    await step(market, until={"AAA"})
    for ws in sockets:
        assert (await receive(ws))["type"] == "quotes"
        await ws.disconnect()


async def test_deactivated_symbol_is_dropped_from_the_feed(market):
    """After an operator deactivates a symbol, snapshots leave it out and subscribing to it is an error."""
    from ticker.models import Stock

    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["*"]})
    await receive(ws)
    await database_sync_to_async(Stock.objects.filter(symbol="CCC").update)(active=False)
    result = await step(market, until={"AAA"})
    # The delisting reaches this process's hub through Redis, like every step:
    # once the frame of a later step has arrived here, the hub has applied it.
    await recv_until(ws, lambda frame: frame["type"] == "quotes" and frame["step"] >= result.step, 3)
    await send(ws, {"action": "subscribe", "symbols": ["CCC"]})
    frames = [await receive(ws)]
    while frames[-1]["type"] != "error":
        frames.append(await receive(ws))
    assert frames[-1]["code"] == "unknown_symbol"
    await send(ws, {"action": "subscribe", "symbols": ["*"]})
    frame = await recv_until(ws, "snapshot", 3)
    assert "CCC" not in {q["symbol"] for q in frame["quotes"]}
    await ws.disconnect()


async def test_unsubscribing_one_symbol_from_all_still_brings_symbols_listed_later(market):
    """On ["*"] less one symbol, a symbol listed afterwards streams like any other (docs/protocol.md)."""
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["*"]})
    await receive(ws)
    await send(ws, {"action": "unsubscribe", "symbols": ["BBB"]})
    assert (await receive(ws))["type"] == "unsubscribed"
    await database_sync_to_async(Stock.objects.create)(
        symbol="DDD", name="DDD Corp.", price="10.00", reference_price="10.00", volatility=0.3, drift=0.05
    )
    result = await step(market, until={"DDD"})
    seen: set[str] = set()
    frame = await recv_until(
        ws,
        lambda frame: frame["type"] == "quotes" and frame["step"] >= result.step,
        3,
        skipped=lambda frame: seen.update(q["symbol"] for q in frame["quotes"]),
    )
    seen |= {q["symbol"] for q in frame["quotes"]}
    assert "DDD" in seen and "BBB" not in seen
    await ws.disconnect()


async def collect(ws, seconds: float, *, until=None) -> list[dict]:
    """Every non-heartbeat frame that arrives within ``seconds``, or up to the first for which ``until`` holds."""
    frames = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        # receive_nothing, not a timed-out receive_from, which would cancel the consumer
        if await ws.receive_nothing(timeout=0.05, interval=0.01):
            continue
        frame = json.loads(await ws.receive_from())
        if frame["type"] != "heartbeat":
            frames.append(frame)
            if until is not None and until(frame):
                break
    return frames


async def test_max_rate_conflates_and_the_latest_price_wins(market):
    """With max_rate 0.5, six quick steps become fewer frames; the last holds the latest seq, jumps are flagged."""
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["AAA"], "max_rate": 0.5})
    seq = (await receive(ws))["quotes"][0]["seq"]
    for _ in range(6):
        await step(market, until={"AAA"})
    stored = await database_sync_to_async(lambda: Stock.objects.get(symbol="AAA").seq)()
    # Up to the frame with the stored seq: the flush at the end of the 2 s interval. 10 s bounds a busy machine.
    frames = await collect(ws, 10, until=lambda frame: frame["quotes"][0]["seq"] == stored)
    assert 1 <= len(frames) < 6, "six steps, capped at one frame every two seconds"
    for frame in frames:
        assert frame["type"] == "quotes" and [q["symbol"] for q in frame["quotes"]] == ["AAA"]
        new = frame["quotes"][0]["seq"]
        assert new > seq
        # A jump is conflation, and the frame says so; without the flag seq goes up by one.
        assert frame.get("conflated", False) == (new > seq + 1)
        seq = new
    assert seq == stored == frames[-1]["quotes"][0]["seq"], "the latest price is never held back"
    assert any(frame.get("conflated") for frame in frames)
    await ws.disconnect()


async def test_max_rate_null_lifts_the_cap(market):
    """A later subscribe with "max_rate": null gets every step again, seq by seq."""
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["AAA"], "max_rate": 0.5})
    await receive(ws)
    await send(ws, {"action": "subscribe", "symbols": ["AAA"], "max_rate": None})
    seq = (await receive(ws))["quotes"][0]["seq"]
    for _ in range(4):
        await step(market, until={"AAA"})
        frame = await receive(ws)
        assert frame["quotes"][0]["seq"] == seq + 1 and "conflated" not in frame
        seq += 1
    await ws.disconnect()


@pytest.mark.parametrize("value", ["fast", 0, -1, 1000, True, [2]])
async def test_a_bad_max_rate_is_an_error_and_the_connection_stays(market, value):
    """max_rate must be a number of frames per second from 0.1 to 100 (or null)."""
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["AAA"], "max_rate": value})
    frame = await receive(ws)
    assert frame["type"] == "error" and frame["code"] == "bad_max_rate"
    await send(ws, {"action": "ping"})
    assert (await receive(ws))["type"] == "pong"
    await ws.disconnect()


async def test_movers_arrive_at_once_then_as_the_market_moves_and_stop_at_count_zero(market):
    """{"action": "movers"} brings a movers frame at once and more as prices move; count 0 stops them."""
    ws = await connect()
    await send(ws, {"action": "movers", "count": 2})
    frame = await receive(ws)
    assert frame["type"] == "movers" and frame["listed"] == 3
    assert len(frame["gainers"]) == len(frame["losers"]) == 2
    pcts = [q["change_pct"] for q in frame["gainers"]]
    assert pcts == sorted(pcts, reverse=True) and set(frame["gainers"][0]) >= {"symbol", "price", "seq"}
    await step(market, until={"AAA", "BBB", "CCC"})
    later = await recv_until(ws, "movers", 3)
    assert later["step"] > frame["step"]
    await send(ws, {"action": "movers", "count": 0})
    await send(ws, {"action": "ping"})
    assert (await receive(ws))["type"] == "pong"  # the stop was acted on before this
    await step(market, until={"AAA", "BBB", "CCC"})
    assert await ws.receive_nothing(timeout=1.5)  # movers come at least once a second while followed
    await ws.disconnect()


@pytest.mark.parametrize("count", [21, -1, "ten", True, None, 2.5])
async def test_a_bad_movers_count_is_an_error_and_the_connection_stays(market, count):
    """count must be a whole number from 0 to 20."""
    ws = await connect()
    await send(ws, {"action": "movers", "count": count})
    frame = await receive(ws)
    assert frame["type"] == "error" and frame["code"] == "bad_count"
    await send(ws, {"action": "ping"})
    assert (await receive(ws))["type"] == "pong"
    await ws.disconnect()


async def test_a_delisted_symbol_is_announced_and_leaves_the_subscription(market):
    """A watchlist holding a symbol the operator deactivates gets a delisted frame, then quotes without it."""
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["AAA", "CCC"]})
    await receive(ws)
    await database_sync_to_async(Stock.objects.filter(symbol="CCC").update)(active=False)
    result = await step(market)

    def quotes_only(frame: dict) -> None:
        assert frame["type"] == "quotes"

    frame = await recv_until(ws, "delisted", 3, skipped=quotes_only)
    assert frame == {"type": "delisted", "step": result.step, "symbols": ["CCC"]}
    await step(market, until={"AAA"})
    frame = await receive(ws)
    assert frame["type"] == "quotes" and [q["symbol"] for q in frame["quotes"]] == ["AAA"]
    await ws.disconnect()


async def test_a_handler_that_raises_gives_everything_back_before_its_1011(market, monkeypatch):
    """Issue 20, one way out: a handler exception detaches the connection from the fan-out, gives its admission
    slot back and brings the gauge down (it used to skip disconnect() and leave a ghost the hub fed forever)."""
    from ticker.edge import admission
    from ticker.edge.consumers import QuoteConsumer
    from ticker.hub import get_hub
    from ticker.ops import metrics

    def broken(self, command) -> None:
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(QuoteConsumer, "on_ping", broken)
    hub = await get_hub()

    def held() -> tuple[int, int, int]:
        return len(hub.fanout), metrics.open_connections["websocket"], admission.connections().held

    before = held()
    ws = await connect()
    await send(ws, {"action": "subscribe", "symbols": ["AAA"]})
    assert (await receive(ws))["type"] == "snapshot"
    assert held() == tuple(n + 1 for n in before)
    await send(ws, {"action": "ping"})
    # The communicator re-raises the application's exception, as daphne logs it before closing with 1011.
    with pytest.raises(RuntimeError, match="a bug in a handler"):
        await ws.wait(3)
    assert held() == before


async def test_a_clients_own_close_code_is_counted_as_other(market):
    """Issue 20: ticker_closes_total is labelled by documented close codes only; a code a client invents is
    "other", so no client can add label values to /metrics."""
    from ticker.ops import metrics

    def count(code: str) -> float:
        return metrics.WEB.get_sample_value("ticker_closes_total", {"code": code}) or 0.0

    before = count("other"), count("1000")
    for code in (4321, 3999, 1000):
        ws = await connect()
        await ws.disconnect(code)
    assert (count("other"), count("1000")) == (before[0] + 2, before[1] + 1)
    assert count("4321") == count("3999") == 0.0
    exposition = metrics.exposition().decode()
    assert 'code="4321"' not in exposition and 'code="3999"' not in exposition
