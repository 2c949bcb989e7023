"""GET /api/movers/ and the SSE stream's movers events, from the web process's hub (real Redis layer)."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_movers_answer_the_hubs_board_with_an_etag(market):
    """The top gainers and losers with the listed count; the same board again is a 304."""
    client = AsyncClient()
    response = await client.get("/api/movers/?count=2")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"step", "listed", "gainers", "losers"} and body["listed"] == 3
    assert len(body["gainers"]) == len(body["losers"]) == 2
    pcts = [q["change_pct"] for q in body["losers"]]
    assert pcts == sorted(pcts)
    again = await client.get("/api/movers/?count=2", headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304 and again["ETag"] == response["ETag"]
    assert len((await client.get("/api/movers/")).json()["gainers"]) == 3  # default 10, of 3 listed


@pytest.mark.parametrize("count", ["0", "21", "ten", "-1", ""])
async def test_a_bad_count_is_a_400(market, count):
    response = await AsyncClient().get(f"/api/movers/?count={count}")
    assert response.status_code == 400 and response.json()["code"] == "bad_count"


async def test_the_stream_sends_movers_events_after_its_snapshot(market):
    """?movers=N adds a movers event right after the snapshot; a bad N is refused before the stream starts."""
    client = AsyncClient()
    assert (await client.get("/api/quotes/stream/?movers=21")).json()["code"] == "bad_count"
    response = await client.get("/api/quotes/stream/?symbols=AAA&movers=1", headers={"Origin": "http://testserver"})
    assert response.status_code == 200
    events = aiter(response.streaming_content)
    text = ""
    while text.count("\n\n") < 2:
        chunk = await anext(events)
        text += chunk.decode() if isinstance(chunk, bytes) else chunk
    snapshot, movers = text.split("\n\n")[:2]
    assert "event: snapshot" in snapshot and "event: movers" in movers
    frame = json.loads(movers.split("data: ", 1)[1])
    assert frame["type"] == "movers" and len(frame["gainers"]) == 1 and frame["listed"] == 3
    await events.aclose()
