"""Fuzzing every transport's way in and out on a real daphne (issue 20): nothing a client sends leaks a connection.

Where tests/test_fuzz.py sends 10,000 messages over ONE connection, this opens one connection per case:
a WebSocket that sends a few generated messages (random JSON, deep nesting, random and invalid-UTF-8
bytes, huge numbers, NaN and Infinity) and then closes or drops its TCP connection; an SSE stream and a
long-poll with generated query parameters. The invariants are the issue's: no WebSocket is closed with
1011 (or at all) for what a client sent, each unparseable message is answered ``bad_json`` and the socket
stays usable; HTTP never answers 500; once the clients have gone every connection gauge is back to 0
and the fan-out holds no entry for a socket that is gone; a watcher on every symbol misses nothing.

``TICKER_FUZZ_CASES`` sets the cases per transport (default 500: about a minute here; docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ticker.wire.protocol import ALL, MAX_MESSAGE_BYTES

from .clients import sample, samples
from .conftest import wait_for
from .processes import site_fixture
from .test_fuzz import ERROR_CODES, LISTED, NO_KEEPALIVE, UNSOLICITED, Watcher, message, strict_json

pytestmark = pytest.mark.processes

CASES = int(os.environ.get("TICKER_FUZZ_CASES", "500"))
TRANSPORTS = ("websocket", "sse", "long_poll")
# The HTTP errors docs/protocol.md lists for these endpoints ("HTTP errors"); 503 if the feed is unavailable.
HTTP_STATUSES = {200, 400, 404, 503}
HTTP_CODES = {"bad_symbols", "too_many_symbols", "unknown_symbol", "bad_count", "bad_since", "bad_wait"}
HTTP_CODES |= {"bad_last_event_id", "unavailable", "server_full"}


def _number(digits: str) -> str:
    return json.dumps({"action": "movers", "count": "@"}).replace('"@"', digits)


# Messages no JSON parser should accept, each within the 16 KiB limit: issue 20's nesting (RecursionError),
# integers past Python's 4,300 digits, floats past a double, NaN and Infinity.
# Nesting of 1,000 levels or more: past Python's recursion limit (1,000), whatever the parser's own stack depth;
# shallower nesting is valid JSON (test_fuzz.py's messages cover it).
deep = st.one_of(
    st.integers(1000, MAX_MESSAGE_BYTES // 2).map(lambda n: "[" * n + "]" * n),
    st.integers(1000, MAX_MESSAGE_BYTES // 6).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(100, MAX_MESSAGE_BYTES - 20).map(lambda n: '{"action":' + "[" * n),
)
unparseable = st.one_of(
    deep,
    st.integers(4301, 9000).map(lambda n: _number("9" * n)),
    st.integers(309, 5000).map(lambda e: _number(f"1e{e}")),
    st.sampled_from(["NaN", "Infinity", "-Infinity"]).map(_number),
    st.sampled_from(["NaN", "Infinity", "-Infinity"]).map(lambda c: '{"action": "subscribe", "max_rate": ' + c + "}"),
)
# Binary frames: random bytes and invalid UTF-8 (docs/protocol.md: a binary frame is answered bad_frame).
binary = st.binary(max_size=64) | st.binary(max_size=32).map(lambda b: b"\xff\xfe" + b + b"\xc3")
case_message = st.one_of(unparseable.map(lambda m: ("bad_json", m)), binary.map(lambda b: ("bad_frame", b)))
case_message |= message.map(lambda m: (None, m))  # anything test_fuzz.py sends: any documented answer

text = st.text(max_size=12)
symbols_param = st.one_of(
    st.just(ALL),
    st.lists(st.sampled_from(LISTED), min_size=1, max_size=4).map(",".join),
    st.lists(text, max_size=4).map(",".join),
    st.integers(90, 150).map(lambda n: ",".join(f"S{i}" for i in range(n))),
)
step_param = st.one_of(st.integers(0, 10**6).map(str), st.just("9" * 30), text, st.sampled_from(["-1", "1.5", "²"]))
wait_param = st.sampled_from(["0", "0.1", "0.3", "-1", "nan", "inf", "1e400", "", "x"]) | text
raw_query = st.binary(max_size=40).map(urllib.parse.quote_from_bytes)  # percent-encoded invalid UTF-8 too


def _query(params: dict[str, str], raw: str) -> str:
    return "?" + "&".join(filter(None, (urllib.parse.urlencode(params), raw)))


sse_query = st.builds(
    _query,
    st.fixed_dictionaries({}, optional={"symbols": symbols_param, "movers": text | st.integers(-1, 25).map(str)}),
    st.just("") | raw_query,
)
poll_query = st.builds(
    _query,
    st.fixed_dictionaries({"wait": wait_param}, optional={"since": step_param, "symbols": symbols_param, "junk": text}),
    st.just("") | raw_query,
)
last_event_id = st.none() | step_param.filter(lambda v: v.isascii() and v.isprintable())

FUZZ = settings(
    max_examples=CASES,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # one real server for all cases: a shrunk replay would meet another server state
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


class WebSocketCase:
    """One generated connection: each message is followed by a marker (a subscribe to a made-up symbol, answered
    by an ``unknown_symbol`` error naming it), so the frames before the marker's answer are that message's."""

    MARKER = "~MARK"

    def __init__(self, url: str, origin: str):
        self.url, self.origin = url, origin

    def run(self, messages: list[tuple[str | None, str | bytes]], drop: bool) -> None:
        # Closed below, or dropped.
        ws = connect(self.url, origin=self.origin, max_size=None, **NO_KEEPALIVE).__enter__()
        try:
            for i, (expected, sent) in enumerate(messages):
                ws.send(sent)
                ws.send(json.dumps({"action": "subscribe", "symbols": [f"{self.MARKER}{i}"]}))
                answer = self._answer(ws, sent, f"{self.MARKER}{i}")
                codes = [f["code"] for f in answer if f["type"] == "error"]
                assert set(codes) <= ERROR_CODES, f"{sent!r:.200}: undocumented {codes}"
                if expected is not None:
                    assert codes == [expected], f"{sent!r:.200}: answered {answer}"
        finally:
            if drop:  # the client vanishes: no close frame, the TCP connection just ends
                with contextlib.suppress(OSError):
                    ws.socket.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                ws.close()

    @staticmethod
    def _answer(ws, sent, marker: str) -> list[dict]:
        frames = []
        while True:
            try:
                frame = json.loads(ws.recv(timeout=10))
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                raise AssertionError(f"{sent!r:.200}: the server closed the connection ({code})") from None
            if frame["type"] == "error" and frame.get("symbols") == [marker]:
                return frames
            if frame["type"] not in UNSOLICITED:
                frames.append(frame)


def _http(url: str, last_id: str | None = None) -> tuple[int, bytes]:
    """Status and the start of the body; an SSE stream is read up to its first event, then the client leaves."""
    request = urllib.request.Request(url, headers={"Last-Event-ID": last_id} if last_id is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.headers["Content-Type"].startswith("text/event-stream"):
                body = b""
                while not body.endswith(b"\n\n") or b"data:" not in body:
                    body += response.readline()
                return response.status, body
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except TimeoutError:
        return 200, b""  # a long-poll still waiting: the client leaves, another way out


def _checked_http(url: str, last_id: str | None = None) -> None:
    status, body = _http(url, last_id)
    assert status in HTTP_STATUSES, f"{url} -> {status} {body[:200]!r}"
    if status != 200:
        assert json.loads(body)["code"] in HTTP_CODES, f"{url} -> {status} {body[:200]!r}"
    elif body and not body.startswith(b"retry:"):
        assert "quotes" in strict_json(body.decode()), f"{url} -> {body[:200]!r}"


def _gauges(base: str) -> dict[str, float]:
    found = samples(base + "/metrics")
    gauges = {t: sample(found, "ticker_connections", transport=t) for t in TRANSPORTS}
    return {**gauges, "fanout_entries": sample(found, "ticker_fanout_entries"), "1011": _closes_1011(found)}


def _closes_1011(found: dict) -> float:
    return sample(found, "ticker_closes_total", code="1011")


site = site_fixture(market=True)


def test_fuzzed_connections_on_every_transport_leave_nothing_behind(site):
    """CASES generated connections per transport: documented answers, never 1011 or 500; afterwards every gauge
    is 0, the fan-out holds only the watcher, and the watcher's stream has no gap."""
    url = f"ws://127.0.0.1:{site.port}/ws/quotes/"
    watcher = Watcher(url, site.base)
    watcher.start()
    assert watcher.subscribed.wait(30) and watcher.error is None, watcher.error
    websocket = WebSocketCase(url, site.base)
    timings = {}

    @FUZZ
    @given(st.lists(case_message, min_size=1, max_size=4), st.booleans())
    def websockets(messages, drop):
        websocket.run(messages, drop)

    @FUZZ
    @given(sse_query, last_event_id)
    def streams(query, last_id):
        _checked_http(site.base + "/api/quotes/stream/" + query, last_id)

    @FUZZ
    @given(poll_query)
    def long_polls(query):
        _checked_http(site.base + "/api/quotes/" + query)

    for name, fuzz in (("websocket", websockets), ("sse", streams), ("long_poll", long_polls)):
        started = time.monotonic()
        fuzz()
        timings[name] = time.monotonic() - started
    fuzzed = time.monotonic()
    # What is left once the server has seen every client go (a dropped TCP connection, a long-poll whose client
    # left mid-wait: a moment after the client's side): only the watcher.
    watching = {"websocket": 1, "sse": 0, "long_poll": 0, "fanout_entries": 1, "1011": 0}
    wait_for(lambda: _gauges(site.base) == watching, timeout=15, what=f"only the watcher ({_gauges(site.base)})")
    wait_for(lambda: any(t > fuzzed for t in watcher.arrivals), timeout=10, what="frames after the fuzz")
    watcher.stop.set()
    watcher.join(10)
    assert watcher.error is None, watcher.error
    assert watcher.gaps == []
    nothing = {"websocket": 0, "sse": 0, "long_poll": 0, "fanout_entries": 0, "1011": 0}
    wait_for(lambda: _gauges(site.base) == nothing, timeout=15, what=f"every gauge at 0 ({_gauges(site.base)})")
    print(f"\nfuzz, {CASES} connections per transport: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
