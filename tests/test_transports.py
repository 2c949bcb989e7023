"""Server-Sent Events and long-polling on real processes (daphne, run_market, Redis)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from .conftest import wait_for
from .processes import site_fixture

pytestmark = pytest.mark.processes


site = site_fixture(scope="module")


@pytest.fixture
def market(site):
    site.start_market()
    yield
    site.stop("market")


def open_stream(site, query="", headers=None):
    request = urllib.request.Request(site.base + "/api/quotes/stream/" + query, headers=headers or {})
    return urllib.request.urlopen(request, timeout=10)


def read_events(response, count: int, kinds=("snapshot", "quotes")) -> list[dict]:
    """Read ``count`` SSE events of ``kinds``: {"id", "event", "data"} (others, comments and retry lines skipped)."""
    events, current = [], {}
    while len(events) < count:
        line = response.readline().decode().rstrip("\n")
        if not line:
            if "data" in current and current.get("event") in kinds:
                current["data"] = json.loads(current["data"])
                events.append(current)
            current = {}
        elif not line.startswith((":", "retry:")):
            field, _, value = line.partition(": ")
            current[field] = value
    return events


def get(site, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(site.base + path, timeout=40) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_sse_starts_with_a_snapshot_then_one_event_per_step(site, market):
    """The stream opens with a snapshot, then quotes events whose id is the step and whose seq continue."""
    with open_stream(site, "?symbols=AAPL,MSFT") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = read_events(response, 6)
    snapshot, rest = events[0], events[1:]
    assert snapshot["event"] == "snapshot" and {q["symbol"] for q in snapshot["data"]["quotes"]} == {"AAPL", "MSFT"}
    seq = {q["symbol"]: q["seq"] for q in snapshot["data"]["quotes"]}
    steps = []
    for event in rest:
        assert event["event"] == "quotes" and int(event["id"]) == event["data"]["step"]
        steps.append(event["data"]["step"])
        for quote in event["data"]["quotes"]:
            assert quote["seq"] == seq[quote["symbol"]] + 1
            seq[quote["symbol"]] = quote["seq"]
    assert steps == sorted(set(steps))


def test_sse_resume_with_last_event_id_makes_the_client_whole(site, market):
    """A reconnect with Last-Event-ID gets a snapshot of what changed since, and no seq is lost after it."""
    with open_stream(site, "?symbols=AAPL,MSFT,TSLA") as response:
        events = read_events(response, 3)
    state = {}
    for event in events:
        for quote in event["data"]["quotes"]:
            state[quote["symbol"]] = quote["seq"]
    last_id = events[-1]["id"]

    def moved_while_away() -> bool:
        _, now = get(site, "/api/quotes/?symbols=AAPL,MSFT,TSLA")
        return any(quote["seq"] > state[quote["symbol"]] for quote in now["quotes"])

    # Away until the market has moved one of them (a step or two; 15 s bounds a busy machine).
    wait_for(moved_while_away, timeout=15, what="a symbol to change while the client is away")
    with open_stream(site, "?symbols=AAPL,MSFT,TSLA", {"Last-Event-ID": last_id}) as response:
        resumed = read_events(response, 5)
    catch_up = resumed[0]
    assert catch_up["event"] == "snapshot" and int(catch_up["id"]) > int(last_id)
    assert catch_up["data"]["quotes"], "symbols changed while away must be in the catch-up snapshot"
    for quote in catch_up["data"]["quotes"]:
        assert quote["seq"] > state[quote["symbol"]]
        state[quote["symbol"]] = quote["seq"]
    for event in resumed[1:]:
        for quote in event["data"]["quotes"]:
            assert quote["seq"] == state[quote["symbol"]] + 1
            state[quote["symbol"]] = quote["seq"]


def test_sse_refuses_a_foreign_origin(site):
    """A page on another site cannot read the stream."""
    with pytest.raises(urllib.error.HTTPError) as caught:
        open_stream(site, "", {"Origin": "http://evil.example"})
    assert caught.value.code == 403


def test_sse_unknown_symbol_is_a_400(site):
    """An unknown symbol is refused before the stream starts."""
    status, body = get(site, "/api/quotes/stream/?symbols=NOPE")
    assert status == 400 and body["code"] == "unknown_symbol"


def test_long_poll_wakes_on_the_next_step(site, market):
    """A long-poll waiting past the current step is answered by the next step's changes."""
    _, current = get(site, "/api/quotes/?since=0&wait=0")
    since = current["step"]
    status, body = get(site, f"/api/quotes/?since={since}&wait=20")
    assert status == 200 and body["step"] > since and body["quotes"]
    assert all(set(q) >= {"symbol", "price", "seq", "ts"} for q in body["quotes"])


def test_long_poll_times_out_with_an_empty_answer(site):
    """With no market running, the wait runs out and the answer is empty, at the same step, and says the feed is
    interrupted."""
    # A market test before this one stopped its market: the hub says so once its silence bound has passed.
    wait_for(
        lambda: get(site, "/api/quotes/?since=0&wait=0")[1]["feed"] == "interrupted",
        timeout=15,
        what="the feed to be interrupted with the market stopped",
    )
    _, current = get(site, "/api/quotes/?since=0&wait=0")
    status, body = get(site, f"/api/quotes/?since={current['step']}&wait=1")
    assert status == 200 and body["step"] == current["step"] and body["quotes"] == []
    assert body["feed"] == "interrupted"


def test_long_poll_since_an_old_step_answers_at_once(site, market):
    """Asking since step 0 returns the latest quote of every symbol straight away."""
    status, body = get(site, "/api/quotes/?since=0&wait=30&symbols=AAPL,MSFT")
    assert status == 200 and [q["symbol"] for q in body["quotes"]] == ["AAPL", "MSFT"]


@pytest.mark.parametrize(
    "query, code",
    [
        ("since=-1&wait=1", "bad_since"),
        ("since=x", "bad_since"),
        ("wait=soon", "bad_wait"),
        ("wait=-2", "bad_wait"),
        ("wait=100", "bad_wait"),  # past the documented 0 to 30 (issue 20: it was accepted)
        ("wait=inf", "bad_wait"),
        ("wait=nan", "bad_wait"),
        ("since=0&symbols=NOPE", "unknown_symbol"),
    ],
)
def test_long_poll_bad_parameters_are_400s(site, query, code):
    """Bad since/wait values are JSON 400s that say what is expected."""
    status, body = get(site, "/api/quotes/?" + query)
    assert status == 400 and body["code"] == code and body["message"]


def test_every_transport_refuses_an_origin_on_another_port(site):
    """A page on 127.0.0.1:9999 may not read the site on its own port: WebSocket, SSE and long-poll all say 403."""
    import asyncio

    import websockets

    other = "http://127.0.0.1:9999"

    async def handshake(origin: str) -> int:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{site.port}/ws/quotes/", origin=origin):
                return 101
        except websockets.InvalidStatus as refused:
            return refused.response.status_code

    assert asyncio.run(handshake(site.base)) == 101
    assert asyncio.run(handshake(other)) == 403
    with pytest.raises(urllib.error.HTTPError) as caught:
        open_stream(site, "", {"Origin": other})
    assert caught.value.code == 403
    request = urllib.request.Request(site.base + "/api/quotes/?since=0&wait=0", headers={"Origin": other})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 403


def test_a_cursor_beyond_the_current_step_is_answered_with_a_snapshot_at_once(site):
    """since= and Last-Event-ID from another database's future get the current state, not an endless wait."""
    started = time.monotonic()
    status, body = get(site, "/api/quotes/?since=999999999&wait=30&symbols=AAPL,MSFT")
    assert status == 200 and [q["symbol"] for q in body["quotes"]] == ["AAPL", "MSFT"] and body["step"] < 999999999
    assert time.monotonic() - started < 20  # well under the 30 s wait, even on a busy machine
    with open_stream(site, "?symbols=AAPL,MSFT", {"Last-Event-ID": "999999999"}) as response:
        snapshot = read_events(response, 1)[0]
    assert snapshot["event"] == "snapshot" and {q["symbol"] for q in snapshot["data"]["quotes"]} == {"AAPL", "MSFT"}
