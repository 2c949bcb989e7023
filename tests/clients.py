"""WebSocket clients for process tests: followers that keep the client's side of the protocol."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass, field

import websockets


@dataclass
class Follower:
    """A WebSocket client on all symbols that keeps the client's side of the protocol.

    It records every frame with its arrival time, counts seq gaps in quotes
    frames (a snapshot resets the baseline, as the protocol says), and the
    feed states its heartbeats announced.
    """

    base: str
    seq: dict[str, int] = field(default_factory=dict)
    gaps: list[tuple[str, int, int]] = field(default_factory=list)
    frames: list[tuple[float, dict]] = field(default_factory=list)
    close_code: int | None = None

    async def run(self, ready: asyncio.Event) -> None:
        url = self.base.replace("http", "ws") + "/ws/quotes/"
        try:
            async with websockets.connect(url, origin=self.base) as ws:
                await ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
                async for text in ws:
                    self.take(json.loads(text))
                    ready.set()
        except websockets.ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else None
        else:
            self.close_code = ws.close_code

    def take(self, frame: dict) -> None:
        self.frames.append((time.monotonic(), frame))
        if frame["type"] == "snapshot":
            for quote in frame["quotes"]:
                assert quote["seq"] >= self.seq.get(quote["symbol"], 0), "a snapshot went back in time"
                self.seq[quote["symbol"]] = quote["seq"]
        elif frame["type"] == "quotes":
            for quote in frame["quotes"]:
                held = self.seq.get(quote["symbol"])
                if held is not None and quote["seq"] != held + 1:
                    self.gaps.append((quote["symbol"], held, quote["seq"]))
                self.seq[quote["symbol"]] = quote["seq"]

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


async def recv_data(ws, limit: float = 10) -> dict:
    """The next frame that is not a heartbeat (heartbeats may come at any time, even before a snapshot)."""
    while (frame := json.loads(await asyncio.wait_for(ws.recv(), limit)))["type"] == "heartbeat":
        pass
    return frame
