"""Clients for tests: the follower that checks the feed, the frame readers, the delta merge, the admin sign-in and
the /metrics reader, each written once."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import websockets
from channels.testing import WebsocketCommunicator
from prometheus_client.parser import text_string_to_metric_families

from bench.seq import SeqFollower
from ticker.wire.protocol import QUOTE_FIELDS


@dataclass
class Follower:
    """A WebSocket client that keeps the client's side of the protocol, for as long as a test runs.

    It subscribes to ``symbols``, records every frame with its arrival time,
    and checks the stream with the benchmarks' seq follower (bench/seq.py):
    seq +1 per symbol in quotes frames (a snapshot is the new baseline, as the
    protocol says, and never goes back), and a step that grows frame by frame.
    """

    base: str
    symbols: list[str] = field(default_factory=lambda: ["*"])
    check: SeqFollower = field(default_factory=SeqFollower)
    frames: list[tuple[float, dict]] = field(default_factory=list)
    close_code: int | None = None

    async def run(self, ready: asyncio.Event) -> None:
        """Follow until cancelled or closed; ``ready`` is set once the subscription's snapshot is in."""
        url = self.base.replace("http", "ws") + "/ws/quotes/"
        try:
            async with websockets.connect(url, origin=self.base) as ws:
                await ws.send(json.dumps({"action": "subscribe", "symbols": self.symbols}))
                async for text in ws:
                    if self.take(json.loads(text))["type"] == "snapshot":
                        ready.set()
        except websockets.ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else None
        else:
            self.close_code = ws.close_code

    def take(self, frame: dict) -> dict:
        self.frames.append((time.monotonic(), frame))
        self.check.take(frame)
        assert not self.check.backwards, f"a snapshot went back in time: {self.check.backwards}"
        return frame

    @property
    def seq(self) -> dict[str, int]:
        """Each followed symbol's last seq."""
        return self.check.seq

    @property
    def gaps(self) -> list[tuple[str, int, int]]:
        """(symbol, held seq, received seq) wherever a quotes frame did not continue a seq by one."""
        return self.check.gaps

    @property
    def steps_back(self) -> list[tuple[int, int]]:
        """(held step, received step) wherever a quotes frame's step did not grow."""
        return self.check.steps_back

    @property
    def updates(self) -> int:
        """Quotes that continued a symbol's seq."""
        return self.check.updates

    def problems(self) -> list[str]:
        """What a client of a steady feed never sees: a seq gap, a step that does not grow, a first frame that is
        not the subscription's snapshot, or after it anything but quotes frames and heartbeats."""
        data = [frame for _, frame in self.frames if frame["type"] != "heartbeat"]
        found = [f"{symbol} seq {held} -> {got}" for symbol, held, got in self.gaps]
        found += [f"step {got} after {held}" for held, got in self.steps_back]
        if data and data[0]["type"] != "snapshot":
            found.append(f"first frame {data[0]}")
        return found + [f"unexpected frame {frame}" for frame in data[1:] if frame["type"] != "quotes"]

    def feeds_since(self, t: float) -> list[str]:
        return [f["feed"] for at, f in self.frames if at >= t and f["type"] == "heartbeat"]

    def quotes_since(self, t: float) -> list[dict]:
        return [f for at, f in self.frames if at >= t and f["type"] in ("quotes", "snapshot") and f["quotes"]]


def get_json(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=5) as response:
        return json.loads(response.read())


async def until(predicate, *, limit: float, what: str) -> float:
    """Wait (asynchronously) until predicate() is true; return the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > limit:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def follow(base: str, count: int) -> tuple[list[Follower], list[asyncio.Task]]:
    """``count`` followers on all symbols at ``base`` (http://HOST:PORT), once the market is stepping."""
    followers = [Follower(base) for _ in range(count)]
    readies = [asyncio.Event() for _ in followers]
    tasks = [asyncio.create_task(f.run(r)) for f, r in zip(followers, readies, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 15)
    # The market is stepping (not still starting) once quotes frames arrive.
    await until(lambda: all(f.quotes_since(0)[1:] for f in followers), limit=15, what="the market's first steps")
    return followers, tasks


async def stop_following(tasks) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


PING = json.dumps({"action": "ping"})


async def flood(ws, count: int) -> None:
    """Send ``count`` pings at once without reading: a client past the message rate limit (the flooder).

    ``ws`` is a ``websockets`` connection or a Channels ``WebsocketCommunicator``.
    """
    for _ in range(count):
        if isinstance(ws, WebsocketCommunicator):
            await ws.send_to(text_data=PING)
        else:
            await ws.send(PING)


async def recv_until(
    ws, wanted: str | Callable[[dict], bool], limit: float = 10, *, skipped: Callable[[dict], Any] | None = None
) -> dict:
    """The first frame but heartbeats of type ``wanted`` (or for which ``wanted(frame)`` holds), e.g. the
    snapshot that answers a subscribe; each frame before it is handed to ``skipped`` (to check or count it).

    ``ws`` and ``limit`` (seconds per frame) as for ``recv_data``.
    """
    matches = (lambda frame: frame["type"] == wanted) if isinstance(wanted, str) else wanted
    while not matches(frame := await recv_data(ws, limit)):
        if skipped is not None:
            skipped(frame)
    return frame


async def recv_data(ws, limit: float = 10) -> dict:
    """The next frame that is not a heartbeat (heartbeats may come at any time, even before a snapshot).

    ``ws`` is a ``websockets`` connection or a Channels ``WebsocketCommunicator``; ``limit`` seconds per frame.
    """
    while True:
        if isinstance(ws, WebsocketCommunicator):
            # Its own timeout, not wait_for: the communicator cancels the consumer when it runs out.
            text = await ws.receive_from(timeout=limit)
        else:
            text = await asyncio.wait_for(ws.recv(), limit)
        if (frame := json.loads(text))["type"] != "heartbeat":
            return frame


def is_whole(quote: dict[str, Any]) -> bool:
    """A whole quote carries every field; a delta (docs/protocol.md, "Quote formats") does not."""
    return all(field in quote for field in QUOTE_FIELDS)


def merge_delta(held: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """What a delta-format client holds after ``delta`` (that symbol's next seq) arrives on ``held``: the
    changed fields replaced, ``change`` and ``change_pct`` worked out from price and prev_close in cents, as
    static/ticker/js/delta.js ``derive`` does."""
    assert delta["symbol"] == held["symbol"] and delta["seq"] == held["seq"] + 1, f"{delta} does not follow {held}"
    merged = {**held, **delta}
    cents = round(merged["price"] * 100) - round(merged["prev_close"] * 100)
    close = round(merged["prev_close"] * 100)
    pct = (Decimal(cents * 100) / close).quantize(Decimal("0.01"), ROUND_HALF_EVEN) if close else 0
    return {**merged, "change": cents / 100, "change_pct": float(pct)}


def sign_in(page, url: str) -> None:
    """Open ``url`` of a site prepared with processes.add_operator in a browser page (Playwright) and sign in on
    the admin's login form it redirects to, as the operator."""
    from .processes import ADMIN_PASSWORD, ADMIN_USER

    page.goto(url)
    page.fill("#id_username", ADMIN_USER)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")


class Samples(dict):
    """Every sample of a Prometheus exposition, (name, sorted labels) -> value, and the metric names it declares."""

    declared: set[str]


def samples(url: str) -> Samples:
    """Every sample of the exposition at ``url``."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found, found.declared = Samples(), set()
    for family in text_string_to_metric_families(text):
        found.declared.add(family.name)
        for each in family.samples:
            found[(each.name, tuple(sorted(each.labels.items())))] = each.value
    return found


def sample(found: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled sample its metric has not had yet (a counter whose label was never
    incremented). A metric the exposition does not declare at all fails: a renamed metric must not read as 0."""
    suffixes = ("", "_total", "_count", "_sum", "_bucket", "_created", "_info")
    assert any(name == family + end for family in found.declared for end in suffixes), (
        f"{name} is not in the exposition (declared: {sorted(found.declared)})"
    )
    return found.get((name, tuple(sorted(labels.items()))), 0.0)
