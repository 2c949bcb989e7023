"""The hub's broadcast path for subscribers with a wire (daphne's WebSockets), and its garbage-collection duty."""

from __future__ import annotations

import asyncio
import gc
import json

import pytest

from ticker import heap
from ticker.hub import QuoteHub, RateCap, get_hub

pytestmark = pytest.mark.asyncio


class RecordingWire:
    """Stands in for daphne_support.Wire: keeps each prepared frame it is asked to write."""

    def __init__(self):
        self.prepared = []

    def write(self, prepared) -> None:
        self.prepared.append(prepared)

    @property
    def frames(self) -> list[dict]:
        return [json.loads(p.payload) for p in self.prepared]


class Client:
    """A subscriber with a wire, as QuoteConsumer is under daphne; every symbol."""

    subscription = None
    backlogged = False
    behind = False

    def __init__(self, cap: RateCap | None = None):
        self.cap, self.wire = cap, RecordingWire()

    async def send_frame(self, text: str, step: int, event: str = "quotes") -> None:
        raise AssertionError("a subscriber with a wire gets its frames down the wire")


def quote(symbol: str, seq: int) -> dict:
    return {"symbol": symbol, "price": 100.0 + seq, "change": 0.0, "change_pct": 0.0, "seq": seq, "ts": 1}


async def test_wire_subscribers_get_each_step_framed_once():
    """Every wire subscriber gets each step's frame, and the frame is built once for all of them."""
    hub = QuoteHub(None)
    first, second = Client(), Client()
    hub.attach(first)
    hub.attach(second)
    await hub.publish(1, [quote("AAA", 1), quote("BBB", 1)])
    await hub.publish(2, [quote("AAA", 2)])
    assert [(f["step"], [q["seq"] for q in f["quotes"]]) for f in first.wire.frames] == [(1, [1, 1]), (2, [2])]
    assert [id(p) for p in first.wire.prepared] == [id(p) for p in second.wire.prepared]


async def test_a_capped_wire_subscriber_gets_nothing_older_than_a_fresh_snapshot():
    """Quotes held by max_rate before an outage are dropped once the snapshot after it has gone out."""
    hub = QuoteHub(None)
    client = Client(cap=RateCap(max_rate=2))  # at most one frame per 0.5 s
    hub.attach(client)
    await hub.publish(1, [quote("AAA", 1)])  # goes out at once
    await hub.publish(2, [quote("AAA", 2)])  # held until the interval ends
    await hub.reload((5, [(quote("AAA", 5), 5)]), resnapshot=True)  # back after an outage: AAA is at seq 5
    await asyncio.sleep(0.8)  # past the interval, when a held frame would be flushed
    assert [(f["type"], [q["seq"] for q in f["quotes"]]) for f in client.wire.frames] == [
        ("quotes", [1]),
        ("snapshot", [5]),
    ]


@pytest.mark.django_db(transaction=True)
async def test_the_process_hub_runs_full_collections_until_it_stops(market):
    """While a web process's hub runs, Python's own full collections are off; closing it gives them back."""
    before = gc.get_threshold()
    hub = await get_hub()
    assert gc.get_threshold()[2] == heap.AUTOMATIC_FULL_OFF
    assert hub.collections.active
    await hub.close()
    assert gc.get_threshold() == before
