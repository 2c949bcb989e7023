"""Fuzzing /ws/quotes/ on a real daphne: every client message gets its documented answer, and nobody else suffers.

Hypothesis draws batches of client messages (arbitrary text, arbitrary JSON,
near-valid commands with wrong types, huge and unknown symbol lists, unicode,
truncated JSON, binary frames). One connection sends them all to a real daphne
while the market runs; the site's rate limit is raised so the fuzzer is not
closed for speed. After every message the fuzzer sends a marker (a subscribe
to a made-up symbol, answered by an ``unknown_symbol`` error naming it), so
the frames between two markers are exactly the answer to one message, and they
are checked against what docs/protocol.md promises. Meanwhile a second client
subscribed to every symbol checks that its stream continues without a gap.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from ticker.wire.protocol import ACTIONS, ALL, MAX_MESSAGE_BYTES, MAX_SYMBOLS_PER_MESSAGE

from .conftest import wait_for
from .processes import site_fixture

pytestmark = pytest.mark.processes

MESSAGES = 10_000
BATCH = 50
# Frames a connection may get at any time, not in answer to a message.
UNSOLICITED = {"quotes", "heartbeat"}
ERROR_CODES = {"bad_json", "bad_message", "bad_frame", "unknown_action", "bad_symbols", "too_many_symbols"}
ERROR_CODES |= {"too_large", "unknown_symbol", "rate_limited", "bad_count"}
# The clients' own keepalive pings off (ping_interval=None): websockets makes each ping's payload with the
# ``random`` module, in its own thread, and a ping that fell while Hypothesis drew a batch was reported as
# "Do not use the `random` module inside strategies" (HypothesisDeprecationWarning). daphne pings these
# clients itself, and every read here has its own timeout.
NO_KEEPALIVE = {"ping_interval": None}
# The seeded market's symbols (a data migration); the fuzz draws from a few of them.
LISTED = ["AAPL", "MSFT", "TSLA", "NVDA", "KO", "PEP", "AMD", "INTC", "IBM"]

# Strategies. Each stays cheap to draw: 10,000 messages must generate in seconds.
scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
listed = st.sampled_from(LISTED)
symbol = st.one_of(
    listed,
    listed.map(str.lower),
    listed.map(lambda s: f" {s}\t"),
    st.text(max_size=6),  # unicode, control characters, mostly unknown
    st.just(ALL),
)
# 90 to 400 symbols, one draw: around and far over the cap of 100.
huge = st.tuples(st.integers(90, 400), listed).map(lambda t: [t[1]] + [f"{t[1]}{i}" for i in range(1, t[0])])
symbols = st.one_of(
    st.lists(listed, min_size=1, max_size=5),
    st.lists(symbol, min_size=1, max_size=5),
    st.just([ALL]),
    huge,
    st.lists(scalar, max_size=3),  # empty, or not strings
    scalar,  # not a list
)
wrong_action = st.sampled_from(["SUBSCRIBE", "Ping", "", "subscribe ", "dance"]) | json_value
extra = st.dictionaries(st.sampled_from(["extra", "Symbols", "action "]), scalar, max_size=1)


def command(action, symbols=symbols):
    """A near-valid command: ``action``, ``symbols`` (of any type, or None: left out), maybe an extra key."""
    return st.builds(
        lambda a, s, x: {"action": a, **({} if s is None else {"symbols": s}), **x},
        action,
        symbols,
        extra,
    )


well_formed = command(st.sampled_from(ACTIONS))
message = st.one_of(
    well_formed.map(json.dumps),
    well_formed.map(lambda c: json.dumps(c, ensure_ascii=False)),
    command(st.sampled_from(ACTIONS), st.none()).map(json.dumps),
    command(wrong_action, symbols | st.none()).map(json.dumps),
    st.text(max_size=40),
    json_value.map(json.dumps),
    st.tuples(well_formed.map(json.dumps), st.integers(0, 300)).map(lambda t: t[0][: t[1]]),  # cut short
    st.binary(max_size=32),
)


def _refuse(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


def _finite(text: str) -> float:
    if not math.isfinite(value := float(text)):
        raise ValueError(f"{text} does not fit a float")
    return value


def strict_json(text: str):
    """JSON as RFC 8259 has it and docs/protocol.md promises: no NaN or Infinity, no number beyond a float."""
    return json.loads(text, parse_constant=_refuse, parse_float=_finite)


def documented(message: str | bytes, everything: frozenset[str]) -> list[tuple]:
    """The answer docs/protocol.md promises for ``message`` (``everything``: the listed symbols), frame by frame."""
    if isinstance(message, bytes):
        return [("error", "bad_frame")]
    try:
        data = strict_json(message)
    except (ValueError, RecursionError):
        return [("error", "bad_json")]
    if not isinstance(data, dict):
        return [("error", "bad_message")]
    action = data.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        return [("error", "unknown_action")]
    if action == "ping":
        return [("pong", None)]
    if action == "whoami":  # the fuzz's sockets are anonymous (docs/protocol.md, "Personal frames")
        return [("whoami", None)]
    if action == "movers":  # the fuzz never names a count; a whole number 0..20 would start (or stop) movers
        count = data.get("count")
        valid = isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= 20
        return ([("movers", None)] if count else []) if valid else [("error", "bad_count")]
    named = data.get("symbols")
    if not isinstance(named, list) or not named:
        return [("error", "bad_symbols")]
    if len(named) > MAX_SYMBOLS_PER_MESSAGE:
        return [("error", "too_many_symbols")]
    if not all(isinstance(s, str) for s in named):
        return [("error", "bad_symbols")]
    # Case-insensitive, trimmed, duplicates once, order kept.
    wanted = list(dict.fromkeys(s.strip().upper() for s in named))
    if ALL in wanted and len(wanted) > 1:
        return [("error", "bad_symbols")]
    if wanted == [ALL]:
        return [("snapshot", ALL)] if action == "subscribe" else [("unsubscribed", (ALL,))]
    known = [s for s in wanted if s in everything]
    unknown = [s for s in wanted if s not in everything]
    answer = []
    if known:
        answer.append(("snapshot", frozenset(known)) if action == "subscribe" else ("unsubscribed", tuple(known)))
    if unknown:
        answer.append(("unknown_symbol", tuple(unknown)))
    return answer


def subscribed_after(answer: list[tuple], subscribed: frozenset[str], everything: frozenset[str]) -> frozenset[str]:
    """The connection's symbols once the server has given ``answer`` (frames in ``documented``'s terms)."""
    for kind, symbols in answer:
        if kind == "snapshot":
            subscribed = everything if symbols == ALL else subscribed | symbols
        elif kind == "unsubscribed":
            subscribed = frozenset() if ALL in symbols else subscribed - set(symbols)
    return subscribed


def observed(frame: dict, everything: frozenset[str]) -> tuple:
    """A frame in the terms of ``documented``."""
    if frame["type"] == "snapshot":
        got = frozenset(q["symbol"] for q in frame["quotes"])
        return ("snapshot", ALL if got == everything else got)
    if frame["type"] == "unsubscribed":
        return ("unsubscribed", tuple(frame["symbols"]))
    if frame["type"] == "error" and frame["code"] == "unknown_symbol":
        return ("unknown_symbol", tuple(frame["symbols"]))
    if frame["type"] == "error":
        return ("error", frame["code"])
    return (frame["type"], None)


class Watcher(threading.Thread):
    """A well-behaved client subscribed to every symbol: every quote's seq must continue by exactly 1."""

    def __init__(self, url: str, origin: str):
        super().__init__(daemon=True)
        self.url, self.origin = url, origin
        self.seq: dict[str, int] = {}
        self.gaps: list[str] = []
        self.arrivals: list[float] = []
        self.subscribed, self.stop = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with connect(self.url, origin=self.origin, **NO_KEEPALIVE) as ws:
                ws.send(json.dumps({"action": "subscribe", "symbols": [ALL]}))
                while (frame := json.loads(ws.recv(timeout=10)))["type"] != "snapshot":
                    pass
                self.seq = {q["symbol"]: q["seq"] for q in frame["quotes"]}
                self.subscribed.set()
                while not self.stop.is_set():
                    try:
                        frame = json.loads(ws.recv(timeout=0.2))
                    except TimeoutError:
                        continue
                    if frame["type"] == "snapshot":
                        # A new baseline (docs/protocol.md): sent when the feed was away while the market stepped,
                        # e.g. a market slower than 3 s to take its first step after this watcher subscribed.
                        for quote in frame["quotes"]:
                            symbol, seq = quote["symbol"], quote["seq"]
                            if seq < self.seq.get(symbol, 0):
                                self.gaps.append(f"{symbol} back {self.seq[symbol]} -> {seq}")
                            self.seq[symbol] = seq
                        continue
                    if frame["type"] != "quotes":
                        continue
                    self.arrivals.append(time.monotonic())
                    for quote in frame["quotes"]:
                        if quote["seq"] != self.seq[quote["symbol"]] + 1:
                            self.gaps.append(f"{quote['symbol']} {self.seq[quote['symbol']]} -> {quote['seq']}")
                        self.seq[quote["symbol"]] = quote["seq"]
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
            self.subscribed.set()


class Fuzzer:
    """One connection that sends messages, each followed by a marker, and checks each answer."""

    def __init__(self, ws, everything: frozenset[str]):
        self.ws, self.everything = ws, everything
        self.sent = 0
        self.failure = ""
        # What the connection is subscribed to, followed from the answers: a connection may get a snapshot
        # of exactly these at any time (docs/protocol.md: after the feed was away, or once a held-back
        # reader catches up), and that snapshot answers no message.
        self.subscribed: frozenset[str] = frozenset()
        self.resnapshots = 0
        self.tag = f"~{uuid.uuid4().hex[:6].upper()}-"

    def marker(self, i: int) -> str:
        return json.dumps({"action": "subscribe", "symbols": [f"{self.tag}{i}"]})

    def exchange(self, messages: list[str | bytes]) -> None:
        """Send a batch (pipelined), then read the answers up to the last marker and check each one."""
        # After a failure Hypothesis replays the batch to report it, but the
        # connection is out of step by then: report the first failure again.
        if self.failure:
            raise AssertionError(self.failure)
        try:
            self._exchange(messages)
        except AssertionError as exc:
            self.failure = str(exc)
            raise

    def _exchange(self, messages: list[str | bytes]) -> None:
        first = self.sent
        for i, message in enumerate(messages, start=first):
            assert len(message if isinstance(message, bytes) else message.encode()) <= MAX_MESSAGE_BYTES
            self.ws.send(message)
            self.ws.send(self.marker(i))
        self.sent += len(messages)
        answer: list[tuple] = []
        i = first
        while i < self.sent:
            frame = json.loads(self.ws.recv(timeout=10))
            if frame["type"] in UNSOLICITED:
                continue
            message = messages[i - first]
            assert frame["type"] in {"pong", "whoami", "snapshot", "unsubscribed", "error"}, f"{message!r}: {frame}"
            if frame["type"] == "error":
                assert frame["code"] in ERROR_CODES and frame["message"], f"{message!r}: {frame}"
            got = observed(frame, self.everything)
            expected = documented(message, self.everything)
            if got[0] == "unknown_symbol" and got[1][0].startswith(self.tag):
                assert got[1] == (f"{self.tag}{i}",), f"{message!r}: answer out of step: {answer} then {frame}"
                assert answer == expected, f"{message!r}: answered {answer}"
                self.subscribed = subscribed_after(answer, self.subscribed, self.everything)
                answer = []
                i += 1
            elif self.resnapshot(got, answer, expected):
                self.resnapshots += 1
            else:
                answer.append(got)

    def resnapshot(self, got: tuple, answer: list[tuple], expected: list[tuple]) -> bool:
        """A snapshot that answers no message: not the next expected frame, and all the connection holds."""
        if got[0] != "snapshot" or expected[len(answer) : len(answer) + 1] == [got]:
            return False
        holds = subscribed_after(answer, self.subscribed, self.everything)
        return bool(holds) and (got[1] == ALL if holds == self.everything else got[1] == holds)

    def ping(self) -> dict:
        self.ws.send(json.dumps({"action": "ping"}))
        while (frame := json.loads(self.ws.recv(timeout=10)))["type"] in UNSOLICITED | {"snapshot"}:
            pass
        return frame


# Limits raised so that the fuzzer is not closed for sending fast (the limit has its own tests).
site = site_fixture(market=True, env={"TICKER_WS_RATE": "1000000", "TICKER_WS_BURST": "1000000"})


def test_fuzzed_messages_get_documented_answers_and_leave_the_feed_intact(site):
    """10,000 generated messages each get their documented answer; the socket stays usable; a watcher loses nothing."""
    everything = frozenset(q["symbol"] for q in site.get_json("/api/quotes/")["quotes"])
    assert set(LISTED) <= everything
    url = f"ws://127.0.0.1:{site.port}/ws/quotes/"
    watcher = Watcher(url, site.base)
    watcher.start()
    assert watcher.subscribed.wait(30) and watcher.error is None, watcher.error

    with connect(url, origin=site.base, max_queue=None, **NO_KEEPALIVE) as ws:
        fuzzer = Fuzzer(ws, everything)

        @settings(
            max_examples=MESSAGES // BATCH,
            deadline=None,
            database=None,
            phases=[Phase.generate],  # no shrinking: the connection's state is shared between examples
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        )
        @given(st.lists(message, min_size=BATCH, max_size=BATCH))
        def batch(messages):
            fuzzer.exchange(messages)

        started = time.monotonic()
        batch()
        fuzzed = time.monotonic()
        assert fuzzer.ping()["type"] == "pong", "the fuzzed connection is still usable"
        print(f"\nfuzz: {fuzzer.sent} messages answered as documented, {fuzzer.resnapshots} unsolicited snapshot(s)")

    wait_for(lambda: any(t > fuzzed for t in watcher.arrivals), timeout=10, what="frames after the fuzz")
    site.stop("market")
    stored = {q["symbol"]: q["seq"] for q in site.get_json("/api/quotes/")["quotes"]}
    # The watcher comes to hold the stored seq of every symbol: nothing was lost at the end either.
    wait_for(lambda: watcher.seq == stored, timeout=10, what="the watcher to hold every stored seq")
    watcher.stop.set()
    watcher.join(10)
    assert watcher.error is None, watcher.error
    assert fuzzer.sent >= MESSAGES
    assert watcher.gaps == []
    # It kept receiving all along: frames during the fuzz with no long silence, and after it.
    during = [t for t in watcher.arrivals if started <= t <= fuzzed]
    assert during and max(b - a for a, b in zip([started, *during], [*during, fuzzed], strict=True)) < 10.0
    assert any(t > fuzzed for t in watcher.arrivals)
